"""A reverse proxy that lets through only requests signed with AWS Signature Version 4 by one
known key pair, as API Gateway's IAM authorisation does. The signature is recomputed with
botocore's own signer (an implementation independent of the aws-sigv4 crate `maas` signs with),
and the body is checked against the signed `x-amz-content-sha256`. Refused requests get 403 with
the reason; accepted ones are forwarded to the upstream server and its answer relayed.

Usage: sigv4_proxy.py UPSTREAM_HOST:PORT ACCESS_KEY SECRET_KEY REGION SERVICE
Prints `listening on PORT` once it accepts connections.
"""

import datetime
import hashlib
import hmac
import http.server
import json
import sys
import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

UPSTREAM, ACCESS_KEY, SECRET_KEY, REGION, SERVICE = sys.argv[1:6]


def verify(method, path, headers, body):
    """Returns None if the request is signed correctly, else why not."""
    auth = headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "Missing Authentication Token"
    fields = dict(
        part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(",")
    )
    access_key, date, region, service, terminal = fields["Credential"].split("/")
    if access_key != ACCESS_KEY:
        return f"unknown access key {access_key}"
    if (region, service, terminal) != (REGION, SERVICE, "aws4_request"):
        return f"credential scope {region}/{service}/{terminal} is not {REGION}/{SERVICE}"
    amz_date = headers.get("X-Amz-Date", "")
    signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.timezone.utc
    )
    if abs((datetime.datetime.now(datetime.timezone.utc) - signed_at).total_seconds()) > 300:
        return "Signature expired"
    if not amz_date.startswith(date):
        return "credential date and X-Amz-Date differ"
    body_hash = hashlib.sha256(body).hexdigest()
    if headers.get("X-Amz-Content-SHA256", body_hash) != body_hash:
        return "the body does not match x-amz-content-sha256"
    signed = fields["SignedHeaders"].split(";")
    if "host" not in signed:
        return "host is not signed"
    request = AWSRequest(
        method=method,
        url=f"http://{headers['Host']}{path}",
        data=body,
        headers={name: headers[name] for name in signed},
    )
    request.context["timestamp"] = amz_date
    token = headers.get("X-Amz-Security-Token")
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, token), SERVICE, REGION)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, fields["Signature"]):
        print(f"signature mismatch; canonical request:\n{canonical}", file=sys.stderr)
        return "The request signature we calculated does not match the signature you provided."
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    def handle_any(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        refused = verify(self.command, self.path, self.headers, body)
        if refused is not None:
            self.reply(403, json.dumps({"message": refused}).encode())
            return
        forwarded = urllib.request.Request(
            f"http://{UPSTREAM}{self.path}",
            data=body if self.command != "GET" else None,
            method=self.command,
            headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
        )
        try:
            with urllib.request.urlopen(forwarded, timeout=60) as answer:
                self.reply(answer.status, answer.read())
        except urllib.error.HTTPError as answer:
            self.reply(answer.code, answer.read())

    do_GET = do_POST = handle_any

    def reply(self, status, payload):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening on {server.server_address[1]}", flush=True)
server.serve_forever()
