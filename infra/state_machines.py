"""Writes each inline state machine definition of template.yaml as plain Amazon States Language
JSON, for an offline validator (`scripts/check-template` runs asl-validator on them). Definition
substitutions become placeholders of the right shape: a Lambda ARN for names ending in `Arn`,
a bucket name otherwise.

Usage: python infra/state_machines.py template.yaml OUT_DIR   (prints one path per definition)
"""
import json
import os
import re
import sys

from samtranslator.yaml_helper import yaml_parse


def placeholder(name: str) -> str:
    if name.endswith("Arn"):
        return f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    return "maas-123456789012-us-east-1-models"


def main() -> int:
    template_path, out_dir = sys.argv[1], sys.argv[2]
    with open(template_path) as f:
        template = yaml_parse(f.read())
    os.makedirs(out_dir, exist_ok=True)
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::StateMachine":
            continue
        definition = resource.get("Properties", {}).get("Definition")
        if definition is None:
            continue
        text = re.sub(r"\$\{(\w+)\}", lambda m: placeholder(m.group(1)), json.dumps(definition))
        path = os.path.join(out_dir, f"{name}.asl.json")
        with open(path, "w") as f:
            f.write(text)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
