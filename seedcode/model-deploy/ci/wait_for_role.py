"""Waits until this job's GitLab id_token can assume AWS_ROLE_ARN, for a bounded time.

The SageMaker project makes this repository's CI role moments before the seed commit starts the
first pipeline, and IAM takes a little while before a new role can be assumed everywhere
(eventual consistency): until then STS answers AccessDenied. This retries that answer, and
transient ones, until AWS_ROLE_WAIT_SECONDS (default 180) have passed; any other answer fails at
once. Standard library only: it runs before the job installs anything. The credentials it gets
are dropped; the AWS SDK assumes the role itself, from AWS_WEB_IDENTITY_TOKEN_FILE.
"""

import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

# STS error codes worth waiting out: the role's trust not yet visible, throttling, STS failing to
# fetch GitLab's signing keys, or STS itself.
RETRYABLE = {"AccessDenied", "Throttling", "IDPCommunicationError", "ServiceUnavailable", "InternalFailure"}


def sts_endpoint(env) -> str:
    # The environment variables the AWS SDKs read for a custom endpoint.
    custom = env.get("AWS_ENDPOINT_URL_STS") or env.get("AWS_ENDPOINT_URL")
    return custom or f"https://sts.{env['AWS_REGION']}.amazonaws.com"


def assume(endpoint: str, role_arn: str, token: str, session: str) -> tuple[str, str] | None:
    """None when STS hands out credentials, else its error code and message."""
    form = urllib.parse.urlencode(
        {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": "2011-06-15",
            "RoleArn": role_arn,
            "RoleSessionName": session,
            "WebIdentityToken": token,
            "DurationSeconds": "900",
        }
    ).encode()
    request = urllib.request.Request(endpoint, data=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=30):
            return None
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            root = ET.fromstring(body)
            code = root.findtext(".//{*}Code") or f"HTTP {error.code}"
            message = root.findtext(".//{*}Message") or ""
        except ET.ParseError:
            code, message = ("ServiceUnavailable" if error.code >= 500 else f"HTTP {error.code}"), ""
        return code, message
    except (urllib.error.URLError, TimeoutError) as error:
        return "ServiceUnavailable", f"STS at {endpoint} did not answer: {error}"


def stage_role_hint(role_arn: str, stage: str) -> str:
    account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else "?"
    return (
        f"The {stage} endpoints deploy in account {account}, with the role cfn/target-account.yml makes there. If that "
        f"stack is missing, deploy it in account {account} with StageName={stage}, this project's AWS account as "
        "DevelopmentAccountId and its GitLab group as GitLabGroupPath; if it exists, its GitLabGroupPath must hold "
        f"this project, and only the main branch with an id_token for audience sagemaker-deploy-{stage} is trusted."
    )


def main(env=os.environ, sleep=time.sleep, clock=time.monotonic) -> int:
    role_arn = env["AWS_ROLE_ARN"]
    with open(env["AWS_WEB_IDENTITY_TOKEN_FILE"], encoding="utf-8") as file:
        token = file.read().strip()
    endpoint = sts_endpoint(env)
    deadline = clock() + float(env.get("AWS_ROLE_WAIT_SECONDS", "180"))
    delay = 2.0
    while True:
        error = assume(endpoint, role_arn, token, env.get("AWS_ROLE_SESSION_NAME", "gitlab-ci"))
        if error is None:
            return 0
        code, message = error
        if code not in RETRYABLE or clock() + delay > deadline:
            print(f"error: cannot assume {role_arn}: {code}: {message}", file=sys.stderr)
            if code == "AccessDenied" and env.get("AWS_ROLE_STAGE"):
                print(stage_role_hint(role_arn, env["AWS_ROLE_STAGE"]), file=sys.stderr)
            elif code == "AccessDenied":
                print(
                    "The role trusts only the main branch of this SageMaker project's two GitLab projects, "
                    "at the paths they were created with: a renamed or moved project, or another branch, is refused.",
                    file=sys.stderr,
                )
            return 1
        print(f"waiting {delay:.0f} s for {role_arn}: {code} (a new role takes a moment to be usable)", flush=True)
        sleep(delay)
        delay = min(delay * 2, 20.0)


if __name__ == "__main__":
    sys.exit(main())
