"""The deploy commands against moto: model selection in the registry, the endpoint stack in
CloudFormation, the endpoint test through SageMaker Runtime."""

import hashlib
import json

import pytest
from botocore.exceptions import ClientError
import requests

from deploy.__main__ import main
from tests.conftest import BASELINE, GROUP, PROJECT_ENV, REPO_ROOT, register

STACK = f"sagemaker-{PROJECT_ENV['SAGEMAKER_PROJECT_NAME']}-{PROJECT_ENV['SAGEMAKER_PROJECT_ID']}-staging"


@pytest.fixture
def model_file(tmp_path):
    return tmp_path / "build" / "model.json"


def chosen(model_file):
    return json.loads(model_file.read_text())["ModelPackageArn"]


def answer_next_invocation_with(body: str):
    """Queues what moto's SageMaker Runtime answers to the next InvokeEndpoint."""
    results = {"results": [{"Body": body, "ContentType": "text/csv"}], "region": PROJECT_ENV["AWS_REGION"]}
    requests.post("http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results", json=results).raise_for_status()


def test_select_takes_the_package_the_approval_event_named(aws, model_file, monkeypatch):
    older = register(aws, "Approved")
    register(aws, "Approved")
    monkeypatch.setenv("MODEL_PACKAGE_ARN", older)

    assert main(["--model-file", str(model_file), "select"]) == 0
    assert chosen(model_file) == older


def test_a_model_file_changed_after_approval_fails_the_stage_naming_both_digests(aws, model_file, capsys):
    """Studio users may write any *sagemaker* bucket: the approved model's file is pinned by its
    SHA-256 when the approval's pipeline selects it, and checked before every stage deploys."""
    arn = register(aws, "Approved")
    assert main(["--model-file", str(model_file), "select"]) == 0
    url = aws.client("sagemaker").describe_model_package(ModelPackageName=arn)["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    approved = hashlib.sha256(b"a trained model").hexdigest()
    assert json.loads(model_file.read_text())["ModelData"] == {url: approved}

    bucket, key = url.removeprefix("s3://").split("/", 1)
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=b"something else")
    assert main(["--model-file", str(model_file), "stack", "staging", "--poll-seconds", "0"]) == 1
    error = capsys.readouterr().err
    assert url in error and approved in error and hashlib.sha256(b"something else").hexdigest() in error, error
    with pytest.raises(ClientError):
        aws.client("cloudformation").describe_stacks(StackName=STACK)


def test_select_refuses_a_named_package_that_is_not_approved(aws, model_file, monkeypatch, capsys):
    monkeypatch.setenv("MODEL_PACKAGE_ARN", register(aws, "Rejected"))

    assert main(["--model-file", str(model_file), "select"]) == 1
    assert "is Rejected, not Approved" in capsys.readouterr().err
    assert not model_file.exists()


def test_select_refuses_a_package_of_another_group(aws, model_file, monkeypatch, capsys):
    aws.client("sagemaker").create_model_package_group(ModelPackageGroupName="other")
    monkeypatch.setenv("MODEL_PACKAGE_ARN", register(aws, "Approved", group="other"))

    assert main(["--model-file", str(model_file), "select"]) == 1
    assert f"not to this project's {GROUP}" in capsys.readouterr().err


def test_select_takes_the_newest_approved_of_several(aws, model_file):
    register(aws, "Approved")
    newest_approved = register(aws, "Approved")
    register(aws, "PendingManualApproval")
    register(aws, "Rejected")

    assert main(["--model-file", str(model_file), "select"]) == 0
    assert chosen(model_file) == newest_approved
    assert json.loads(model_file.read_text())["ModelPackageVersion"] == 2


def test_with_none_approved_every_step_ends_successfully_saying_nothing_to_deploy(aws, model_file, capsys):
    register(aws, "PendingManualApproval")

    assert main(["--model-file", str(model_file), "select"]) == 0
    assert chosen(model_file) is None
    assert main(["--model-file", str(model_file), "stack", "staging"]) == 0
    assert main(["--model-file", str(model_file), "test", "staging"]) == 0
    assert capsys.readouterr().out.count("nothing to deploy") == 3
    assert aws.client("cloudformation").list_stacks()["StackSummaries"] == []


def test_stack_deploys_the_chosen_package_with_the_stage_config_then_the_test_checks_answers(aws, model_file, capsys):
    package = register(aws, "Approved")
    assert main(["--model-file", str(model_file), "select"]) == 0

    assert main(["--model-file", str(model_file), "stack", "staging", "--poll-seconds", "0"]) == 0

    cfn = aws.client("cloudformation")
    [described] = cfn.describe_stacks(StackName=STACK)["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE"
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    assert parameters["ModelPackageArn"] == package
    assert parameters["InstanceType"] == "ml.m5.large"
    assert parameters["InstanceCount"] == "1"
    assert {t["Key"]: t["Value"] for t in described["Tags"]}["sagemaker:project-id"] == PROJECT_ENV["SAGEMAKER_PROJECT_ID"]
    endpoint = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}["EndpointName"]
    config = aws.client("sagemaker").describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    [variant] = aws.client("sagemaker").describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.m5.large", 1)

    # Ten sample rows of bodies between 3,300 g and 5,400 g; predictions within 250 g pass.
    answer_next_invocation_with("\n".join(["3650", "3650", "4650", "3450", "5050", "3750", "4150", "4150", "5250", "4650"]))
    assert main(["--model-file", str(model_file), "test", "staging"]) == 0
    assert f"endpoint {endpoint} answered every sample row" in capsys.readouterr().out


@pytest.mark.parametrize(
    "answer, complaint",
    [
        ("not a number", "not one number per row"),
        ("4000,4000", "10 rows sent, 2 predictions received"),
        (",".join(["100"] * 10), "mean absolute error"),
        (",".join(["nan"] * 10), "non-finite"),
    ],
)
def test_the_endpoint_test_fails_on_a_wrong_answer(aws, model_file, capsys, answer, complaint):
    register(aws, "Approved")
    assert main(["--model-file", str(model_file), "select"]) == 0
    assert main(["--model-file", str(model_file), "stack", "staging", "--poll-seconds", "0"]) == 0

    answer_next_invocation_with(answer)
    assert main(["--model-file", str(model_file), "test", "staging"]) == 1
    assert complaint in capsys.readouterr().err


def test_stack_and_test_need_the_select_step_first(aws, model_file, capsys):
    assert main(["--model-file", str(model_file), "stack", "staging"]) == 1
    assert "run `python -m deploy select` first" in capsys.readouterr().err


def test_missing_variables_are_named(aws, model_file, monkeypatch, capsys):
    monkeypatch.delenv("MODEL_EXECUTION_ROLE_ARN")
    assert main(["--model-file", str(model_file), "select"]) == 1
    assert "missing environment variables: MODEL_EXECUTION_ROLE_ARN" in capsys.readouterr().err


def test_the_stack_names_the_package_and_the_deploy_commit(aws, model_file, monkeypatch):
    package = register(aws, "Approved")
    monkeypatch.setenv("CI_COMMIT_SHA", "fedcba9876543210fedcba9876543210fedcba98")
    assert main(["--model-file", str(model_file), "select"]) == 0
    assert main(["--model-file", str(model_file), "stack", "staging", "--poll-seconds", "0"]) == 0
    [described] = aws.client("cloudformation").describe_stacks(StackName=STACK)["Stacks"]
    tags = {t["Key"]: t["Value"] for t in described["Tags"]}
    assert tags["model-package-arn"] == package
    assert tags["deploy-commit"] == "fedcba9876543210fedcba9876543210fedcba98"


def stack_parameters(aws, stage):
    [described] = aws.client("cloudformation").describe_stacks(StackName=STACK.replace("-staging", f"-{stage}"))["Stacks"]
    return {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}


@pytest.mark.parametrize("stage", ["staging", "production"])
def test_each_stage_captures_its_traffic_and_is_monitored_against_the_packages_baseline(aws, model_file, stage):
    register(aws, "Approved")
    assert main(["--model-file", str(model_file), "select"]) == 0
    assert main(["--model-file", str(model_file), "stack", stage, "--poll-seconds", "0"]) == 0

    parameters = stack_parameters(aws, stage)
    config = json.loads((REPO_ROOT / "config" / f"{stage}.json").read_text())
    assert parameters["BaselineStatisticsUri"] == f"{BASELINE}/statistics.json"
    assert parameters["BaselineConstraintsUri"] == f"{BASELINE}/constraints.json"
    assert parameters["ArtifactBucket"] == PROJECT_ENV["ARTIFACT_BUCKET"]
    assert parameters["DataCaptureS3Prefix"] == config["DataCaptureS3Prefix"] == f"data-capture/{stage}"
    assert 0 < int(parameters["DataCaptureSamplingPercentage"]) <= 100
    assert parameters["MonitoringScheduleExpression"].startswith("cron(")
    # Staging's ten test rows are not worth a paid monitoring job every hour.
    assert parameters["Monitoring"] == {"staging": "off", "production": "on"}[stage]


def test_production_autoscales_and_staging_does_not(aws, model_file):
    register(aws, "Approved")
    assert main(["--model-file", str(model_file), "select"]) == 0
    for stage in ("staging", "production"):
        assert main(["--model-file", str(model_file), "stack", stage, "--poll-seconds", "0"]) == 0
    production, staging = stack_parameters(aws, "production"), stack_parameters(aws, "staging")
    assert int(production["AutoScalingMaxInstanceCount"]) > int(production["InstanceCount"]) >= 2
    assert int(production["AutoScalingInvocationsPerInstance"]) > 0
    # The template's default: 0 turns autoscaling off.
    assert staging.get("AutoScalingMaxInstanceCount", "0") == "0"


def test_a_package_without_a_baseline_is_deployed_unmonitored_saying_so(aws, model_file, capsys):
    package = register(aws, "Approved", baseline=False)
    assert main(["--model-file", str(model_file), "select"]) == 0
    assert main(["--model-file", str(model_file), "stack", "staging", "--poll-seconds", "0"]) == 0

    parameters = stack_parameters(aws, "staging")
    assert (parameters["BaselineStatisticsUri"], parameters["BaselineConstraintsUri"]) == ("", "")
    assert f"{package} carries no data-quality baseline: the endpoint is not monitored" in capsys.readouterr().out


def test_teardown_deletes_the_stage_and_says_so_when_there_is_none(aws, model_file, capsys):
    register(aws, "Approved")
    assert main(["--model-file", str(model_file), "select"]) == 0
    assert main(["--model-file", str(model_file), "stack", "staging", "--poll-seconds", "0"]) == 0
    cfn = aws.client("cloudformation")
    endpoint = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=STACK)["Stacks"][0]["Outputs"]}["EndpointName"]

    assert main(["teardown", "staging", "--poll-seconds", "0"]) == 0
    assert f"stack {STACK} deleted" in capsys.readouterr().out
    with pytest.raises(ClientError):
        cfn.describe_stacks(StackName=STACK)
    with pytest.raises(ClientError):
        aws.client("sagemaker").describe_endpoint(EndpointName=endpoint)

    assert main(["teardown", "staging", "--poll-seconds", "0"]) == 0
    assert "nothing to tear down" in capsys.readouterr().out


def test_a_stage_in_its_own_account_runs_as_that_accounts_model_role_and_captures_to_its_bucket(aws, model_file, monkeypatch):
    register(aws, "Approved")
    monkeypatch.setenv("PRODUCTION_MODEL_EXECUTION_ROLE_ARN", "arn:aws:iam::222222222222:role/sagemaker-gitlab-123456789012-production-model")
    monkeypatch.setenv("PRODUCTION_ARTIFACT_BUCKET", "sm-gl-eu-west-1-222222222222-123456789012-production")
    assert main(["--model-file", str(model_file), "select"]) == 0
    assert main(["--model-file", str(model_file), "stack", "production", "--poll-seconds", "0"]) == 0
    assert main(["--model-file", str(model_file), "stack", "staging", "--poll-seconds", "0"]) == 0

    production, staging = stack_parameters(aws, "production"), stack_parameters(aws, "staging")
    assert production["ModelExecutionRoleArn"].endswith(":role/sagemaker-gitlab-123456789012-production-model")
    assert production["ArtifactBucket"] == "sm-gl-eu-west-1-222222222222-123456789012-production"
    # The package, and so its files and baseline, stay where the build registered them.
    assert production["BaselineStatisticsUri"] == f"{BASELINE}/statistics.json"
    assert staging["ModelExecutionRoleArn"] == PROJECT_ENV["MODEL_EXECUTION_ROLE_ARN"]
    assert staging["ArtifactBucket"] == PROJECT_ENV["ARTIFACT_BUCKET"]


def test_half_a_stage_account_setting_is_named(aws, model_file, monkeypatch, capsys):
    register(aws, "Approved")
    monkeypatch.setenv("STAGING_ARTIFACT_BUCKET", "sm-gl-eu-west-1-111111111111-123456789012-staging")
    assert main(["--model-file", str(model_file), "select"]) == 0
    assert main(["--model-file", str(model_file), "stack", "staging", "--poll-seconds", "0"]) == 1
    assert "STAGING_MODEL_EXECUTION_ROLE_ARN missing" in capsys.readouterr().err
