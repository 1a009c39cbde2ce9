"""moto as the IAM/STS (and CloudFormation) stand-in of deploy/terraform/test.sh.

  moto_iam.py serve                      moto on a loopback port; prints {"url": ...} once ready
  moto_iam.py URL enforce on|off         IAM authentication + authorization on (or off) from the
                                         next request on
  moto_iam.py URL web-identity ROLE_ARN  what the IRSA webhook's token buys: AssumeRoleWithWebIdentity
                                         into ROLE_ARN; prints the session as JSON (to a 0600 file)
  moto_iam.py URL trust-session ROLE_NAME SESSION_ARN
                                         adds a role session's ARN to ROLE_NAME's trust principals
                                         (moto compares trust principals verbatim: it does not map
                                         assumed-role/NAME/SESSION to role/NAME as IAM does)
  moto_iam.py URL rejson ROLE_NAME      re-puts ROLE_NAME's inline policies as JSON (moto's
                                         CloudFormation stores them as Python dicts, which moto's
                                         own IAM enforcement then fails on: HTTP 500, KeyError
                                         'policy_document'); prints the policy names it rewrote
  moto_iam.py URL delete-policy ROLE_NAME POLICY_NAME
  moto_iam.py URL show ROLE_NAME         the role's trust policy and inline policies as moto holds them
  moto_iam.py URL cfn-deploy STACK TEMPLATE KEY=VALUE...
                                         CloudFormation create_stack, waits; prints the outputs
  moto_iam.py URL cfn-delete STACK

moto keeps everything in its default account (123456789012): Terraform's AWS provider cannot send
moto's x-moto-account-id header, and moto evaluates a role's trust policy only when the role lives in
the caller's own account, so both "accounts" are that one (tests/peers/moto_sts.py says the same).
"""

import ast
import json
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request

import boto3

REGION = "us-east-1"


def client(service, url, creds=None):
    creds = creds or {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    return boto3.client(service, endpoint_url=url, region_name=REGION, **creds)


def serve():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(json.dumps({"url": f"http://{host}:{port}"}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()


def enforce(url, state):
    # Body = how many more requests go unchecked: 0 = enforce from now on, inf = never.
    # (Not form-encoded: moto reads the raw body, which werkzeug empties for form content types.)
    body = {"on": b"0", "off": b"inf"}[state]
    req = urllib.request.Request(
        f"{url}/moto-api/reset-auth", data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(req).read()


def web_identity(url, role_arn):
    # Unsigned, as the SDK's web-identity provider sends it; moto accepts any token (it does not
    # evaluate the role's OIDC trust policy) and mints a session of the role.
    sts = client("sts", url)
    out = sts.assume_role_with_web_identity(
        RoleArn=role_arn, RoleSessionName="irsa-pod", WebIdentityToken="eyJ.test.token"
    )
    c = out["Credentials"]
    print(
        json.dumps(
            {
                "AWS_ACCESS_KEY_ID": c["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
                "AWS_SESSION_TOKEN": c["SessionToken"],
                "arn": out["AssumedRoleUser"]["Arn"],
            }
        )
    )


def parse_document(doc):
    """A policy document as moto returns it: a dict, JSON, or (for the inline policies of a role
    created through moto's CloudFormation) the Python repr of a dict."""
    if not isinstance(doc, str):
        return doc
    try:
        return json.loads(urllib.parse.unquote(doc))
    except ValueError:
        return {"unparsed (moto stored the Python repr of the document, not JSON)": ast.literal_eval(doc)}


def trust_session(url, role_name, session_arn):
    iam = client("iam", url)
    trust = iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    trust = parse_document(trust)
    for statement in trust["Statement"]:
        aws = statement.get("Principal", {}).get("AWS")
        if aws is not None:
            statement["Principal"]["AWS"] = (aws if isinstance(aws, list) else [aws]) + [session_arn]
    iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=json.dumps(trust))


def rejson(url, role_name):
    iam = client("iam", url)
    fixed = []
    for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        if isinstance(doc, str):
            try:
                json.loads(urllib.parse.unquote(doc))
                continue
            except ValueError:
                doc = ast.literal_eval(doc)
        iam.put_role_policy(RoleName=role_name, PolicyName=name, PolicyDocument=json.dumps(doc))
        fixed.append(name)
    print(" ".join(fixed))


def show(url, role_name):
    iam = client("iam", url)
    role = iam.get_role(RoleName=role_name)["Role"]
    trust = parse_document(role["AssumeRolePolicyDocument"])
    policies = {}
    for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        policies[name] = parse_document(doc)
    print(
        json.dumps(
            {"arn": role["Arn"], "max_session_duration": role.get("MaxSessionDuration"), "trust": trust, "policies": policies}
        )
    )


def cfn_deploy(url, stack, template, params):
    cfn = client("cloudformation", url)
    cfn.create_stack(
        StackName=stack,
        TemplateBody=open(template).read(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in (p.split("=", 1) for p in params)],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    deadline = time.monotonic() + 60
    while True:
        s = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        if not s["StackStatus"].endswith("_IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            sys.exit(f"{stack}: still {s['StackStatus']} after 60 s")
        time.sleep(0.2)
    if s["StackStatus"] != "CREATE_COMPLETE":
        events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
        reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}" for e in events if e.get("ResourceStatusReason")]
        sys.exit(f"{stack}: {s['StackStatus']}: {reasons}")
    resources = [
        (r.get("LogicalResourceId"), r.get("ResourceType"), r.get("ResourceStatus"))
        for r in cfn.describe_stack_resources(StackName=stack)["StackResources"]
    ]
    print(json.dumps({"outputs": {o["OutputKey"]: o["OutputValue"] for o in s.get("Outputs", [])}, "resources": resources}))


def main():
    if sys.argv[1:] == ["serve"]:
        return serve()
    url, cmd, *args = sys.argv[1:]
    if cmd == "enforce":
        enforce(url, *args)
    elif cmd == "web-identity":
        web_identity(url, *args)
    elif cmd == "trust-session":
        trust_session(url, *args)
    elif cmd == "rejson":
        rejson(url, *args)
    elif cmd == "delete-policy":
        client("iam", url).delete_role_policy(RoleName=args[0], PolicyName=args[1])
    elif cmd == "show":
        show(url, *args)
    elif cmd == "cfn-deploy":
        cfn_deploy(url, args[0], args[1], args[2:])
    elif cmd == "cfn-delete":
        client("cloudformation", url).delete_stack(StackName=args[0])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
