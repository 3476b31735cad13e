"""Creates or updates this project's SageMaker Pipeline, starts it and follows the run.

    python -m pipelines.run_pipeline                 # what GitLab CI runs
    python -m pipelines.run_pipeline --no-wait       # start and return (or PIPELINE_WAIT=false)
    python -m pipelines.run_pipeline --print-definition

The project comes from the CI/CD variables the SageMaker project set on this repository
(SAGEMAKER_PROJECT_NAME, SAGEMAKER_PROJECT_ID, AWS_REGION, ARTIFACT_BUCKET,
MODEL_PACKAGE_GROUP_NAME, SAGEMAKER_PIPELINE_ROLE_ARN); export them to run it elsewhere.
Exits non-zero when the pipeline cannot be created or started, or when its run fails.
"""

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from sagemaker.core.workflow.pipeline_context import PipelineSession

from pipelines.pipeline import Project, get_pipeline

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = REPO_ROOT / "data" / "penguins.csv"
PROJECT_VARIABLES = {
    "name": "SAGEMAKER_PROJECT_NAME",
    "id": "SAGEMAKER_PROJECT_ID",
    "region": "AWS_REGION",
    "role_arn": "SAGEMAKER_PIPELINE_ROLE_ARN",
    "bucket": "ARTIFACT_BUCKET",
    "model_package_group": "MODEL_PACKAGE_GROUP_NAME",
}
# GitLab's predefined variables naming where the code comes from (lineage; empty outside CI).
SOURCE_VARIABLES = {"commit": "CI_COMMIT_SHA", "repository_url": "CI_PROJECT_URL", "ci_pipeline_url": "CI_PIPELINE_URL"}
FINISHED = {"Succeeded", "Failed", "Stopped"}


def project_from_env(env=os.environ) -> Project:
    missing = [variable for variable in PROJECT_VARIABLES.values() if not env.get(variable)]
    if missing:
        raise SystemExit(
            f"missing environment variables: {', '.join(missing)}. The SageMaker project sets them "
            "as CI/CD variables of this repository (Settings > CI/CD > Variables); export them to run locally."
        )
    source = {field: env.get(variable, "") for field, variable in SOURCE_VARIABLES.items()}
    return Project(**{field: env[variable] for field, variable in PROJECT_VARIABLES.items()}, **source)


def input_data_url(project: Project, source: str, s3) -> str:
    """An s3:// URL as it is; a local file uploaded once under its content hash, so every
    run's input stays in the bucket unchanged for lineage."""
    if source.startswith("s3://"):
        return source
    path = Path(source)
    if not path.is_file():
        raise SystemExit(f"input data {path} is not a file: give a CSV file or an s3:// URL")
    body = path.read_bytes()
    key = f"{project.pipeline_name}/input/{hashlib.sha256(body).hexdigest()[:16]}/{path.name}"
    s3.put_object(Bucket=project.bucket, Key=key, Body=body, ServerSideEncryption="AES256")
    return f"s3://{project.bucket}/{key}"


def follow(sagemaker, execution_arn: str, poll_seconds: float, timeout_seconds: float) -> str:
    """Polls the run until it finishes, printing each step's status change; returns the final status."""
    deadline = time.monotonic() + timeout_seconds
    seen: dict[str, str] = {}
    while True:
        status = sagemaker.describe_pipeline_execution(PipelineExecutionArn=execution_arn)["PipelineExecutionStatus"]
        steps = sagemaker.list_pipeline_execution_steps(PipelineExecutionArn=execution_arn, SortOrder="Ascending")
        for step in steps["PipelineExecutionSteps"]:
            name, step_status = step["StepName"], step["StepStatus"]
            if seen.get(name) != step_status:
                seen[name] = step_status
                reason = f": {step['FailureReason']}" if step.get("FailureReason") else ""
                print(f"  step {name}: {step_status}{reason}", flush=True)
        if status in FINISHED:
            return status
        if time.monotonic() > deadline:
            raise SystemExit(f"the run {execution_arn} is still {status} after {timeout_seconds:.0f} s; it goes on in SageMaker")
        time.sleep(poll_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-data", default=str(DEFAULT_INPUT), help="a CSV file to upload, or an s3:// URL")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        # A CI/CD variable can make every job return once the run started, saving runner minutes.
        default=os.environ.get("PIPELINE_WAIT", "true").lower() in ("false", "0", "no"),
        help="start the run and return [default: from PIPELINE_WAIT=false]",
    )
    parser.add_argument("--print-definition", action="store_true", help="print the pipeline's JSON and stop")
    parser.add_argument("--poll-seconds", type=float, default=30.0)
    # Under the job's 2 h timeout in .gitlab-ci.yml, so the job ends with this script's message.
    parser.add_argument("--timeout-minutes", type=float, default=110.0)
    args = parser.parse_args(argv)

    project = project_from_env()
    boto_session = boto3.Session(region_name=project.region)
    try:
        s3 = boto_session.client("s3")
        data_url = input_data_url(project, args.input_data, s3)
        session = PipelineSession(boto_session=boto_session, default_bucket=project.bucket)
        pipeline = get_pipeline(project, session, data_url)
        if args.print_definition:
            print(json.dumps(json.loads(pipeline.definition()), indent=2))
            return 0
        pipeline.upsert(role_arn=project.role_arn, description=f"Model build of SageMaker project {project.name}", tags=project.tags)
        # The run is named after the commit, and says which GitLab pipeline started it.
        execution = pipeline.start(
            execution_display_name=f"commit-{project.commit[:8]}" if project.commit else None,
            execution_description=f"GitLab pipeline {project.ci_pipeline_url}" if project.ci_pipeline_url else None,
        )
    except (ClientError, BotoCoreError) as err:
        print(f"error: creating or starting pipeline {project.pipeline_name} failed: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        # What the SDK cannot build (a region without one of the images, say) is a ValueError.
        message = " ".join(str(err).split())
        print(f"error: the SageMaker SDK cannot build pipeline {project.pipeline_name}: {message}", file=sys.stderr)
        return 1
    print(f"pipeline {project.pipeline_name} started: {execution.arn}", flush=True)
    print(f"input data: {data_url}", flush=True)
    if args.no_wait:
        return 0

    status = follow(boto_session.client("sagemaker"), execution.arn, args.poll_seconds, args.timeout_minutes * 60)
    print(f"pipeline run {status}", flush=True)
    return 0 if status == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
