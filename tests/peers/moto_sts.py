"""STS for the end-to-end tests: moto on a loopback port, laid out like the two accounts.

Account B's principal: IAM user `account_b` with an identity policy allowing sts:AssumeRole on A's role
— the proxy's base credentials. A's role: `account_a_role`, whose trust policy names B's principal with
an sts:ExternalId condition, and whose permission policy allows aps:RemoteWrite. Then auth enforcement
is switched on, so a wrong secret, a wrong ExternalId or a missing identity policy is refused.

moto evaluates a role's trust policy (and so the ExternalId condition) only when the role lives in
the caller's own moto account: it looks the role up in the caller's IAM backend and silently skips
the trust check otherwise. So both principals live in one moto account here, and the cross-account
boundary itself is not modelled (real STS would also check A's trust names B's account).

Prints one JSON line on stdout once ready:
  {"url", "access_key_id", "secret_access_key", "role_arn", "external_id"}
and serves until SIGTERM.
"""

import argparse
import json
import signal
import sys
import threading
import urllib.request

import boto3
from moto.server import ThreadedMotoServer

ACCOUNT_A = "111111111111"
ACCOUNT_B = "222222222222"
REGION = "us-east-1"


def client(service, url, account):
    c = boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    # moto picks the account per request from this header (setup runs before auth is enforced).
    c.meta.events.register(
        "before-sign.*.*", lambda request, **_: request.headers.__setitem__("x-moto-account-id", account)
    )
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--external-id", required=True)
    ap.add_argument("--workspace-arn", default=f"arn:aws:aps:{REGION}:{ACCOUNT_A}:workspace/ws-e2e")
    args = ap.parse_args()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"

    iam_b = client("iam", url, ACCOUNT_B)
    iam_b.create_user(UserName="account_b")
    key = iam_b.create_access_key(UserName="account_b")["AccessKey"]
    role_arn = f"arn:aws:iam::{ACCOUNT_B}:role/account_a_role"
    iam_b.put_user_policy(
        UserName="account_b",
        PolicyName="assume-account-a-role",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn}],
            }
        ),
    )
    iam_a = iam_b  # see the module docstring: one moto account, or the trust policy is ignored
    iam_a.create_role(
        RoleName="account_a_role",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_B}:user/account_b"},
                        "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"sts:ExternalId": args.external_id}},
                    }
                ],
            }
        ),
    )
    iam_a.put_role_policy(
        RoleName="account_a_role",
        PolicyName="remote-write",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "aps:RemoteWrite", "Resource": args.workspace_arn}],
            }
        ),
    )
    # Enforce authentication and authorization from the next request on.
    # (Not form-encoded: moto reads the raw body, which werkzeug empties for form content types.)
    enforce = urllib.request.Request(
        f"{url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(enforce).read()

    print(
        json.dumps(
            {
                "url": url,
                "access_key_id": key["AccessKeyId"],
                "secret_access_key": key["SecretAccessKey"],
                "role_arn": role_arn,
                "external_id": args.external_id,
            }
        ),
        flush=True,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
