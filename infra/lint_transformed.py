"""Turns template.yaml into plain CloudFormation with the SAM translator and lints the result with
cfn-lint. `sam validate --lint` checks the SAM template; some errors (e.g. E3004, a circular
dependency through an S3 trigger and a policy on the same bucket) only show after the transform,
and CloudFormation would refuse the stack at deploy time.

Usage: python infra/lint_transformed.py [template.yaml]
"""
import json
import os
import subprocess
import sys
import tempfile

from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The stack uses inline policy statements only, so no IAM lookup is needed offline."""

    def load(self):
        return {}


def main() -> int:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    path = sys.argv[1] if len(sys.argv) > 1 else "template.yaml"
    with open(path) as f:
        sam_template = yaml_parse(f.read())
    # The translator expects a packaged template: code already uploaded to S3.
    for resource in sam_template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://packaged-code/function.zip"
    translator = Translator(NoManagedPolicies(), Parser())
    cfn = translator.translate(sam_template=sam_template, parameter_values={"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"})
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as out:
        json.dump(cfn, out, indent=1)
        transformed = out.name
    result = subprocess.run(["cfn-lint", "--format", "parseable", transformed], capture_output=True, text=True)
    print(result.stdout, end="")
    print(result.stderr, end="", file=sys.stderr)
    if result.returncode not in (0, 4):  # 4: warnings only
        print(f"cfn-lint found errors in the transformed template ({transformed})", file=sys.stderr)
        return 1
    print(f"transformed template passes cfn-lint ({len(cfn['Resources'])} resources)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
