"""The deploy pipeline's steps, one command each:

    python -m deploy select             pick the model package → build/model.json
    python -m deploy stack staging      create or update the staging endpoint stack, wait for it
    python -m deploy test staging       call the staging endpoint with data/endpoint-sample.csv
    python -m deploy stack production   the same for production

The project comes from the CI/CD variables the SageMaker project set on this repository
(SAGEMAKER_PROJECT_NAME, SAGEMAKER_PROJECT_ID, AWS_REGION, ARTIFACT_BUCKET, MODEL_PACKAGE_GROUP_NAME,
MODEL_EXECUTION_ROLE_ARN) and, when the model registry's approval started the pipeline,
MODEL_PACKAGE_ARN. A stage whose endpoints live in an account of their own also has
<STAGE>_MODEL_EXECUTION_ROLE_ARN and <STAGE>_ARTIFACT_BUCKET (that account's model role and data
bucket), which take the place of the two for that stage; its jobs run with that account's
credentials (ci/aws-credentials.sh). Every command exits non-zero when its step fails.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from deploy import endpoint_test, stack
from deploy.model import NotDeployable, model_data_urls, select_model_package, sha256_of

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "endpoint.yml"
STAGES = ("staging", "production")
REQUIRED = (
    "SAGEMAKER_PROJECT_NAME",
    "SAGEMAKER_PROJECT_ID",
    "AWS_REGION",
    "ARTIFACT_BUCKET",
    "MODEL_PACKAGE_GROUP_NAME",
    "MODEL_EXECUTION_ROLE_ARN",
)
NOTHING_TO_DEPLOY = "nothing to deploy"


class Failure(Exception):
    """A step failed; the message says why and what to do."""


def environment() -> dict[str, str]:
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        raise Failure(
            f"missing environment variables: {', '.join(missing)}. The SageMaker project sets them as CI/CD "
            "variables of this repository (Settings > CI/CD > Variables); export them to run locally."
        )
    return {name: os.environ[name] for name in REQUIRED}


def stage_environment(env: dict[str, str], stage: str, lookup=os.environ.get) -> dict[str, str]:
    """`env` with the stage's own model role and data bucket when it has an account of its own."""
    prefix = stage.upper()
    overrides = {name: lookup(f"{prefix}_{name}") for name in ("MODEL_EXECUTION_ROLE_ARN", "ARTIFACT_BUCKET")}
    given = {name: value for name, value in overrides.items() if value}
    if given and len(given) != len(overrides):
        missing = sorted(f"{prefix}_{name}" for name in overrides if name not in given)
        raise Failure(f"{', '.join(missing)} missing: the SageMaker project sets both for a {stage} account of its own")
    return {**env, **given}


def select(args, env, session) -> None:
    explicit = os.environ.get("MODEL_PACKAGE_ARN") or None
    try:
        package = select_model_package(session.client("sagemaker"), env["MODEL_PACKAGE_GROUP_NAME"], explicit)
    except NotDeployable as err:
        raise Failure(str(err)) from None
    args.model_file.parent.mkdir(parents=True, exist_ok=True)
    if package is None:
        args.model_file.write_text(json.dumps({"ModelPackageArn": None}) + "\n")
        print(f"{NOTHING_TO_DEPLOY}: group {env['MODEL_PACKAGE_GROUP_NAME']} has no approved model package yet", flush=True)
        return
    chosen = {
        "ModelPackageArn": package["ModelPackageArn"],
        "ModelPackageVersion": package.get("ModelPackageVersion"),
        "ChosenBecause": "named by the approval event" if explicit else "newest approved package of the group",
        # What the endpoint's monitoring schedule compares its traffic with: the data-quality
        # baseline the build pipeline registered with the package (none for older packages).
        "DataQualityBaseline": data_quality_baseline(package),
        # The bytes approved: Studio users may write the project bucket, so every stage checks
        # the model files against these before it deploys.
        "ModelData": {url: sha256_of(session.client("s3"), url) for url in model_data_urls(package)},
    }
    args.model_file.write_text(json.dumps(chosen, indent=2) + "\n")
    print(f"deploying {chosen['ModelPackageArn']} ({chosen['ChosenBecause']})", flush=True)


def data_quality_baseline(package: dict) -> dict[str, str]:
    quality = package.get("ModelMetrics", {}).get("ModelDataQuality", {})
    return {kind: quality[kind]["S3Uri"] for kind in ("Statistics", "Constraints") if quality.get(kind, {}).get("S3Uri")}


def chosen(model_file: Path) -> dict:
    if not model_file.is_file():
        raise Failure(f"{model_file} does not exist: run `python -m deploy select` first (the build job)")
    return json.loads(model_file.read_text())


def chosen_package(model_file: Path) -> str | None:
    return chosen(model_file)["ModelPackageArn"]


def deploy_stack(args, env, session) -> None:
    model = chosen(args.model_file)
    package_arn = model["ModelPackageArn"]
    if package_arn is None:
        print(f"{NOTHING_TO_DEPLOY}: no approved model package", flush=True)
        return
    env = stage_environment(env, args.stage)
    check_model_data(session.client("s3"), package_arn, model.get("ModelData", {}))
    config_file = REPO_ROOT / "config" / f"{args.stage}.json"
    baseline = model.get("DataQualityBaseline", {})
    parameters = {
        **json.loads(config_file.read_text()),
        "ProjectName": env["SAGEMAKER_PROJECT_NAME"],
        "ProjectId": env["SAGEMAKER_PROJECT_ID"],
        "StageName": args.stage,
        "ModelPackageArn": package_arn,
        "ModelExecutionRoleArn": env["MODEL_EXECUTION_ROLE_ARN"],
        "ArtifactBucket": env["ARTIFACT_BUCKET"],
        "BaselineStatisticsUri": baseline.get("Statistics", ""),
        "BaselineConstraintsUri": baseline.get("Constraints", ""),
    }
    if not (parameters["BaselineStatisticsUri"] and parameters["BaselineConstraintsUri"]):
        print(f"{package_arn} carries no data-quality baseline: the endpoint is not monitored", flush=True)
    tags = {
        "sagemaker:project-name": env["SAGEMAKER_PROJECT_NAME"],
        "sagemaker:project-id": env["SAGEMAKER_PROJECT_ID"],
        # Lineage: the stack and, through CloudFormation, the endpoint, its config and model say
        # which package they serve and which commit of this repository deployed it; the package
        # names the build commit in turn.
        "model-package-arn": package_arn,
    }
    if os.environ.get("CI_COMMIT_SHA"):
        tags["deploy-commit"] = os.environ["CI_COMMIT_SHA"]
    name = stack.stack_name(env["SAGEMAKER_PROJECT_NAME"], env["SAGEMAKER_PROJECT_ID"], args.stage)
    try:
        outputs = stack.deploy(
            session.client("cloudformation"), name, TEMPLATE.read_text(), parameters, tags, args.poll_seconds, args.timeout_minutes * 60
        )
    except stack.DeployFailed as err:
        raise Failure(str(err)) from None
    print(f"endpoint {outputs['EndpointName']} serves {package_arn}", flush=True)


def check_model_data(s3, package_arn: str, approved: dict[str, str]) -> None:
    """Fails when a model file's bytes are not those the select step read after the approval."""
    for url, digest in approved.items():
        now = sha256_of(s3, url)
        if now != digest:
            raise Failure(
                f"{url} of {package_arn} changed after the package was selected for deployment: SHA-256 "
                f"{digest} then, {now} now. Nothing was deployed. Find out who wrote it (CloudTrail's S3 data "
                "events), then approve a package again"
            )
    if approved:
        print(f"model files unchanged since the approval ({len(approved)} checked)", flush=True)
    else:
        print(f"{package_arn} names no model file (ModelDataUrl): nothing to check", flush=True)


def test_endpoint(args, env, session) -> None:
    if chosen_package(args.model_file) is None:
        print(f"{NOTHING_TO_DEPLOY}: no endpoint to test", flush=True)
        return
    name = stack.stack_name(env["SAGEMAKER_PROJECT_NAME"], env["SAGEMAKER_PROJECT_ID"], args.stage)
    endpoint = stack.outputs(session.client("cloudformation"), name)["EndpointName"]
    try:
        error = endpoint_test.run(session.client("sagemaker-runtime"), endpoint, args.sample, args.max_mean_absolute_error)
    except endpoint_test.EndpointTestFailed as err:
        raise Failure(f"endpoint {endpoint}: {err}") from None
    print(f"endpoint {endpoint} answered every sample row; mean absolute error {error:.1f}", flush=True)


def teardown(args, env, session) -> None:
    name = stack.stack_name(env["SAGEMAKER_PROJECT_NAME"], env["SAGEMAKER_PROJECT_ID"], args.stage)
    try:
        deleted = stack.delete(session.client("cloudformation"), name, args.poll_seconds, args.timeout_minutes * 60)
    except stack.DeployFailed as err:
        raise Failure(str(err)) from None
    if deleted:
        print(f"stack {name} deleted: the {args.stage} endpoint no longer runs or costs", flush=True)
    else:
        print(f"stack {name} does not exist: nothing to tear down", flush=True)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    root.add_argument("--model-file", type=Path, default=REPO_ROOT / "build" / "model.json")
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("select", help="pick the model package to deploy").set_defaults(run=select)
    stack_command = commands.add_parser("stack", help="deploy one stage's endpoint stack")
    stack_command.add_argument("stage", choices=STAGES)
    stack_command.add_argument("--poll-seconds", type=float, default=20.0)
    stack_command.add_argument("--timeout-minutes", type=float, default=60.0)
    stack_command.set_defaults(run=deploy_stack)
    test_command = commands.add_parser("test", help="call one stage's endpoint with sample rows")
    test_command.add_argument("stage", choices=STAGES)
    test_command.add_argument("--sample", type=Path, default=REPO_ROOT / "data" / "endpoint-sample.csv")
    test_command.add_argument("--max-mean-absolute-error", type=float, default=600.0)
    test_command.set_defaults(run=test_endpoint)
    teardown_command = commands.add_parser("teardown", help="delete one stage's endpoint stack")
    teardown_command.add_argument("stage", choices=STAGES)
    teardown_command.add_argument("--poll-seconds", type=float, default=20.0)
    teardown_command.add_argument("--timeout-minutes", type=float, default=60.0)
    teardown_command.set_defaults(run=teardown)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        env = environment()
        args.run(args, env, boto3.Session(region_name=env["AWS_REGION"]))
    except Failure as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as err:
        print(f"error: {args.command} failed calling AWS: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
