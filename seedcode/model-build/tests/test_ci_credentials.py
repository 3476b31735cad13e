"""ci/aws-credentials.sh and ci/wait_for_role.py against a local stand-in for STS that answers as
STS does (AWS STS API reference, AssumeRoleWithWebIdentity: a form POST; errors as XML
ErrorResponse/Error/Code): AccessDenied while IAM has not yet made the new role usable."""

import http.server
import os
import subprocess
import sys
import threading
import urllib.parse

import pytest

from tests.conftest import REPO_ROOT

ROLE = "arn:aws:iam::123456789012:role/sagemaker-p-abc123def456-gitlab-ci"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.secret-id-token.signature"


def error_body(code: str, message: str) -> bytes:
    return (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>r-1</RequestId></ErrorResponse>"
    ).encode()


@pytest.fixture
def sts():
    """An STS that refuses with the queued answers first, then hands out credentials."""
    state = {"answers": [], "requests": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            state["requests"].append({k: v[0] for k, v in form.items()})
            status, body = state["answers"].pop(0) if state["answers"] else (200, b"<AssumeRoleWithWebIdentityResponse/>")
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_port}/"
    yield state
    server.shutdown()


def source_credentials(sts, wait_seconds: str | None, **extra: str):
    """Sources the script as a CI job does and prints what the AWS SDK would then read."""
    env = {
        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
        "AWS_ROLE_ARN": ROLE,
        "AWS_ID_TOKEN": TOKEN,
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL_STS": sts["url"],
        "AWS_ROLE_WAIT_SECONDS": wait_seconds,
        "CI_PROJECT_ID": "42",
        "CI_JOB_ID": "7",
        **extra,
    }
    if wait_seconds is None:
        del env["AWS_ROLE_WAIT_SECONDS"]
    script = '. ci/aws-credentials.sh && echo "token file: $(cat "$AWS_WEB_IDENTITY_TOKEN_FILE" | wc -c)"'
    return subprocess.run(["bash", "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_a_role_not_yet_usable_is_waited_for(sts):
    sts["answers"] = [(403, error_body("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"))]
    done = source_credentials(sts, "30")
    assert done.returncode == 0, done.stderr
    assert "waiting 2 s" in done.stdout and f"token file: {len(TOKEN)}" in done.stdout
    assert len(sts["requests"]) == 2
    sent = sts["requests"][-1]
    assert sent["Action"] == "AssumeRoleWithWebIdentity" and sent["RoleArn"] == ROLE
    assert sent["WebIdentityToken"] == TOKEN and sent["RoleSessionName"] == "gitlab-42-7"
    assert TOKEN not in done.stdout + done.stderr


def test_a_refusal_that_lasts_fails_after_the_bound_naming_the_role(sts):
    sts["answers"] = [(403, error_body("AccessDenied", "Not authorized"))] * 10
    done = source_credentials(sts, "1")
    assert done.returncode == 1
    assert f"cannot assume {ROLE}: AccessDenied" in done.stderr and "main branch" in done.stderr
    assert len(sts["requests"]) == 1, "the next wait would pass the bound: no second try"
    assert TOKEN not in done.stdout + done.stderr


def test_an_invalid_token_fails_at_once(sts):
    sts["answers"] = [(400, error_body("InvalidIdentityToken", "Incorrect token audience"))] * 3
    done = source_credentials(sts, "60")
    assert done.returncode == 1
    assert "InvalidIdentityToken: Incorrect token audience" in done.stderr
    assert len(sts["requests"]) == 1


PRODUCTION_ROLE = "arn:aws:iam::222222222222:role/sagemaker-gitlab-123456789012-production-deploy"
STAGE_TOKEN = "eyJhbGciOiJSUzI1NiJ9.secret-production-token.signature"


def test_a_stage_in_its_own_account_assumes_that_accounts_role_with_the_stage_token(sts):
    done = source_credentials(
        sts, None, DEPLOY_STAGE="production", PRODUCTION_AWS_ROLE_ARN=PRODUCTION_ROLE, AWS_STAGE_ID_TOKEN=STAGE_TOKEN
    )
    assert done.returncode == 0, done.stderr
    assert f"token file: {len(STAGE_TOKEN)}" in done.stdout
    sent = sts["requests"][-1]
    assert sent["RoleArn"] == PRODUCTION_ROLE and sent["WebIdentityToken"] == STAGE_TOKEN


def test_a_stage_without_an_account_of_its_own_uses_the_projects_role(sts):
    done = source_credentials(sts, "30", DEPLOY_STAGE="staging", AWS_STAGE_ID_TOKEN=STAGE_TOKEN)
    assert done.returncode == 0, done.stderr
    assert sts["requests"][-1]["RoleArn"] == ROLE and sts["requests"][-1]["WebIdentityToken"] == TOKEN


def test_a_target_role_that_refuses_fails_at_once_saying_what_to_deploy_where(sts):
    sts["answers"] = [(403, error_body("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"))] * 3
    done = source_credentials(
        sts, None, DEPLOY_STAGE="production", PRODUCTION_AWS_ROLE_ARN=PRODUCTION_ROLE, AWS_STAGE_ID_TOKEN=STAGE_TOKEN
    )
    assert done.returncode == 1
    assert len(sts["requests"]) == 1, "a role made ahead of time is not waited for"
    assert "account 222222222222" in done.stderr and "cfn/target-account.yml" in done.stderr
    assert "StageName=production" in done.stderr and "sagemaker-deploy-production" in done.stderr
    assert STAGE_TOKEN not in done.stdout + done.stderr


def test_a_stage_role_without_the_stage_token_is_named(sts):
    done = source_credentials(sts, "30", DEPLOY_STAGE="staging", STAGING_AWS_ROLE_ARN=PRODUCTION_ROLE)
    assert done.returncode == 1
    assert "no AWS_STAGE_ID_TOKEN" in done.stderr
    assert sts["requests"] == []
