"""The pipeline definition, built by the pinned SageMaker SDK against moto, and the CLI that
creates and starts it."""

import hashlib
import json

import boto3
import pytest
from sagemaker.core.workflow.pipeline_context import PipelineSession

from pipelines import run_pipeline
from pipelines.pipeline import SCRIPTS, get_pipeline
from tests.conftest import PROJECT_ENV


@pytest.fixture
def definition(aws):
    project = run_pipeline.project_from_env()
    session = PipelineSession(boto_session=aws, default_bucket=project.bucket)
    pipeline = get_pipeline(project, session, "s3://example/penguins.csv")
    return json.loads(pipeline.definition())


def steps_by_name(definition):
    steps = {}
    for step in definition["Steps"]:
        steps[step["Name"]] = step
        for branch in ("IfSteps", "ElseSteps"):
            steps.update(steps_by_name({"Steps": step.get("Arguments", {}).get(branch, [])}))
    return steps


def test_steps_run_in_order_preprocess_baseline_train_evaluate_check(definition):
    assert [step["Name"] for step in definition["Steps"]] == ["Preprocess", "DataQualityBaseline", "Train", "Evaluate", "CheckRmse"]
    steps = steps_by_name(definition)
    train_inputs = json.dumps(steps["Train"]["Arguments"]["InputDataConfig"])
    assert "Steps.Preprocess.ProcessingOutputConfig.Outputs['train']" in train_inputs
    evaluate_inputs = json.dumps(steps["Evaluate"]["Arguments"]["ProcessingInputs"])
    assert "Steps.Train.ModelArtifacts.S3ModelArtifacts" in evaluate_inputs
    assert "Steps.Preprocess.ProcessingOutputConfig.Outputs['test']" in evaluate_inputs
    assert steps["Train"]["Arguments"]["HyperParameters"]["objective"] == "reg:squarederror"
    assert "xgboost:3.0-5" in steps["Train"]["Arguments"]["AlgorithmSpecification"]["TrainingImage"]
    assert "scikit-learn:1.4-2" in steps["Preprocess"]["Arguments"]["AppSpecification"]["ImageUri"]


def test_condition_registers_below_max_rmse_and_fails_above(definition):
    check = steps_by_name(definition)["CheckRmse"]["Arguments"]
    [condition] = check["Conditions"]
    assert condition["Type"] == "LessThanOrEqualTo"
    assert condition["LeftValue"]["Std:JsonGet"]["Path"] == "regression_metrics.rmse.value"
    assert condition["RightValue"] == {"Get": "Parameters.MaxRmse"}
    assert [step["Type"] for step in check["IfSteps"]] == ["RegisterModel"]
    assert [(step["Name"], step["Type"]) for step in check["ElseSteps"]] == [("RmseTooHigh", "Fail")]


def test_model_is_registered_in_the_project_group_pending_approval(definition):
    [register] = [step for step in steps_by_name(definition).values() if step["Type"] == "RegisterModel"]
    arguments = register["Arguments"]
    assert arguments["ModelPackageGroupName"] == PROJECT_ENV["MODEL_PACKAGE_GROUP_NAME"]
    assert arguments["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    parameters = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    assert parameters["ModelApprovalStatus"] == "PendingManualApproval"
    assert parameters["MaxRmse"] == 400.0
    assert parameters["InputDataUrl"] == "s3://example/penguins.csv"
    statistics = arguments["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert "Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation']" in json.dumps(statistics)


def test_the_registered_container_serves_the_built_in_algorithm(definition):
    """No SAGEMAKER_PROGRAM at all: the XGBoost container leaves algorithm mode for any value of
    it, an empty one included (sagemaker-containers' _env.py, the container's serving.py)."""
    [register] = [step for step in steps_by_name(definition).values() if step["Type"] == "RegisterModel"]
    [container] = register["Arguments"]["InferenceSpecification"]["Containers"]
    environment = container.get("Environment", {})
    assert "SAGEMAKER_PROGRAM" not in environment and "SAGEMAKER_SUBMIT_DIRECTORY" not in environment, environment
    assert "xgboost:3.0-5" in container["Image"]


def test_the_data_quality_baseline_of_the_training_features_is_registered_with_the_package(definition):
    steps = steps_by_name(definition)
    baseline = steps["DataQualityBaseline"]
    assert baseline["Type"] == "QualityCheck"
    assert baseline["CheckType"] == "DATA_QUALITY"
    # A new model: compute its baseline, nothing to check it against.
    assert baseline["SkipCheck"] is True
    assert baseline["RegisterNewBaseline"] is True
    [dataset] = baseline["Arguments"]["ProcessingInputs"]
    assert dataset["S3Input"]["S3Uri"] == {"Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['baseline'].S3Output.S3Uri"}
    assert json.loads(baseline["Arguments"]["Environment"]["dataset_format"])["csv"]["header"] is False

    [register] = [step for step in steps.values() if step["Type"] == "RegisterModel"]
    quality = register["Arguments"]["ModelMetrics"]["ModelDataQuality"]
    assert quality["Statistics"]["S3Uri"] == {"Get": "Steps.DataQualityBaseline.CalculatedBaselineStatistics"}
    assert quality["Constraints"]["S3Uri"] == {"Get": "Steps.DataQualityBaseline.CalculatedBaselineConstraints"}
    drift = register["Arguments"]["DriftCheckBaselines"]["ModelDataQuality"]
    assert drift["Constraints"]["S3Uri"] == {"Get": "Steps.DataQualityBaseline.BaselineUsedForDriftCheckConstraints"}


def test_a_region_without_model_monitor_builds_the_pipeline_without_the_baseline(aws, monkeypatch):
    """Seven regions where training works have no Model Monitor analyzer image (the SDK's
    image_uri_config/model-monitor.json lacks ap-south-2, ap-southeast-4, ca-west-1, the GovCloud
    and ISO regions): the pipeline leaves the baseline out there, and the deploy runs unmonitored,
    saying so."""
    monkeypatch.setenv("AWS_REGION", "ap-south-2")
    project = run_pipeline.project_from_env()
    session = PipelineSession(boto_session=boto3.Session(region_name="ap-south-2"), default_bucket=project.bucket)
    steps = steps_by_name(json.loads(get_pipeline(project, session, "s3://example/penguins.csv").definition()))
    assert "DataQualityBaseline" not in steps and {"Preprocess", "Train", "Evaluate", "CheckRmse"} <= set(steps)
    [register] = [step for step in steps.values() if step["Type"] == "RegisterModel"]
    assert "ModelDataQuality" not in register["Arguments"]["ModelMetrics"]
    assert "DriftCheckBaselines" not in register["Arguments"]


def test_preprocessing_outputs_are_keyed_by_code_and_the_run_time_data_so_a_cached_run_finds_them(definition):
    """A run given another InputDataUrl (Studio lets each run override it) writes its splits
    elsewhere: were the path fixed at definition time, its splits would overwrite those a later
    cached run of the default data reuses."""
    preprocess = steps_by_name(definition)["Preprocess"]["Arguments"]
    outputs = {o["OutputName"]: o["S3Output"]["S3Uri"] for o in preprocess["ProcessingOutputConfig"]["Outputs"]}
    assert set(outputs) == {"train", "validation", "test", "baseline"}
    code = hashlib.sha256((SCRIPTS / "preprocess.py").read_bytes()).hexdigest()[:16]
    for split, uri in outputs.items():
        values = uri["Std:Join"]["Values"]
        assert {"Get": "Parameters.InputDataUrl"} in values, uri
        assert values[0] == f"s3://{PROJECT_ENV['ARTIFACT_BUCKET']}/{PROJECT_ENV['SAGEMAKER_PROJECT_NAME']}-{PROJECT_ENV['SAGEMAKER_PROJECT_ID']}/preprocess/{code}"
        assert values[-1] == split


def test_step_scripts_are_uploaded_to_the_artifact_bucket(definition, aws):
    s3 = aws.client("s3")
    steps = steps_by_name(definition)
    for step, script in (("Preprocess", "preprocess.py"), ("Evaluate", "evaluate.py")):
        [code] = [i for i in steps[step]["Arguments"]["ProcessingInputs"] if i["InputName"] == "code"]
        uri = code["S3Input"]["S3Uri"]
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        assert bucket == PROJECT_ENV["ARTIFACT_BUCKET"]
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == (SCRIPTS / script).read_bytes()


def test_cli_creates_tags_and_starts_the_pipeline_then_updates_it(aws, capsys):
    assert run_pipeline.main(["--no-wait"]) == 0
    assert run_pipeline.main(["--no-wait"]) == 0

    sagemaker = aws.client("sagemaker")
    name = f"{PROJECT_ENV['SAGEMAKER_PROJECT_NAME']}-{PROJECT_ENV['SAGEMAKER_PROJECT_ID']}"
    described = sagemaker.describe_pipeline(PipelineName=name)
    assert described["RoleArn"] == PROJECT_ENV["SAGEMAKER_PIPELINE_ROLE_ARN"]
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=described["PipelineArn"])["Tags"]}
    assert tags["sagemaker:project-name"] == PROJECT_ENV["SAGEMAKER_PROJECT_NAME"]
    assert tags["sagemaker:project-id"] == PROJECT_ENV["SAGEMAKER_PROJECT_ID"]
    assert len(sagemaker.list_pipeline_executions(PipelineName=name)["PipelineExecutionSummaries"]) == 2

    # The committed data went up once, under its content hash, and the pipeline reads it there.
    body = (run_pipeline.DEFAULT_INPUT).read_bytes()
    key = f"{name}/input/{hashlib.sha256(body).hexdigest()[:16]}/penguins.csv"
    assert aws.client("s3").get_object(Bucket=PROJECT_ENV["ARTIFACT_BUCKET"], Key=key)["Body"].read() == body
    definition = json.loads(described["PipelineDefinition"])
    defaults = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    assert defaults["InputDataUrl"] == f"s3://{PROJECT_ENV['ARTIFACT_BUCKET']}/{key}"
    assert "started: arn:aws:sagemaker:" in capsys.readouterr().out


def test_pipeline_wait_false_starts_the_run_without_following_it(aws, monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_WAIT", "false")
    # moto has no ListPipelineExecutionSteps: following the run would fail this call.
    assert run_pipeline.main([]) == 0
    assert "pipeline run" not in capsys.readouterr().out


def test_cli_names_every_missing_variable(aws, monkeypatch):
    monkeypatch.delenv("ARTIFACT_BUCKET")
    monkeypatch.delenv("SAGEMAKER_PIPELINE_ROLE_ARN")
    with pytest.raises(SystemExit, match="SAGEMAKER_PIPELINE_ROLE_ARN, ARTIFACT_BUCKET"):
        run_pipeline.main(["--no-wait"])


def test_an_sdk_refusal_is_one_line_not_a_traceback(aws, monkeypatch, capsys):
    """The SDK raises ValueError for what it cannot build, e.g. a region without an image."""
    monkeypatch.setenv("AWS_REGION", "xx-nowhere-1")
    assert run_pipeline.main(["--no-wait"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the SageMaker SDK cannot build pipeline") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_cli_fails_when_sagemaker_refuses(aws, monkeypatch, capsys):
    monkeypatch.setenv("ARTIFACT_BUCKET", "no-such-bucket")
    assert run_pipeline.main(["--no-wait"]) == 1
    assert "creating or starting pipeline" in capsys.readouterr().err


class ScriptedExecution:
    """A run that goes Executing → Failed, as DescribePipelineExecution and
    ListPipelineExecutionSteps report it (moto has no ListPipelineExecutionSteps)."""

    def __init__(self, statuses):
        self.statuses = list(statuses)

    def describe_pipeline_execution(self, PipelineExecutionArn):
        self.status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"PipelineExecutionStatus": self.status}

    def list_pipeline_execution_steps(self, PipelineExecutionArn, SortOrder):
        steps = [{"StepName": "Preprocess", "StepStatus": "Succeeded"}]
        if self.status == "Failed":
            steps.append({"StepName": "RmseTooHigh", "StepStatus": "Failed", "FailureReason": "the model's test RMSE 512 is above MaxRmse 400"})
        return {"PipelineExecutionSteps": steps}


def test_follow_prints_each_step_once_and_returns_the_final_status(capsys):
    run = ScriptedExecution(["Executing", "Executing", "Failed"])
    assert run_pipeline.follow(run, "arn", poll_seconds=0, timeout_seconds=60) == "Failed"
    out = capsys.readouterr().out
    assert out.count("step Preprocess: Succeeded") == 1
    assert "step RmseTooHigh: Failed: the model's test RMSE 512 is above MaxRmse 400" in out


def test_follow_gives_up_at_the_timeout_saying_the_run_goes_on():
    with pytest.raises(SystemExit, match="still Executing after 0 s; it goes on in SageMaker"):
        run_pipeline.follow(ScriptedExecution(["Executing"]), "arn", poll_seconds=0, timeout_seconds=0)


def test_job_steps_retry_a_busy_region_and_preprocessing_is_cached(definition):
    steps = steps_by_name(definition)
    for name in ("Preprocess", "Train", "Evaluate"):
        kinds = {kind for policy in steps[name]["RetryPolicies"] for kind in policy["ExceptionType"]}
        assert {"Step.THROTTLING", "SageMaker.CAPACITY_ERROR"} <= kinds, name
        # A new account's zero quota for the instance type is no busy region: it fails at once,
        # naming the quota, instead of after an hour of retries.
        assert "SageMaker.RESOURCE_LIMIT" not in kinds, name
    assert steps["Preprocess"]["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
    assert "CacheConfig" not in steps["Train"], "a new training run is the point of a run"


def test_training_may_run_a_day_not_the_trainers_default_hour(definition):
    train = steps_by_name(definition)["Train"]["Arguments"]
    assert train["StoppingCondition"]["MaxRuntimeInSeconds"] == 24 * 3600


def test_training_emits_no_debugger_or_profiler_the_container_ignores(definition):
    train = steps_by_name(definition)["Train"]["Arguments"]
    assert "DebugHookConfig" not in train
    assert train.get("ProfilerConfig", {}).get("DisableProfiler") in (True, None)


def test_the_failure_message_joins_only_a_parameter(definition):
    check = steps_by_name(definition)["CheckRmse"]["Arguments"]
    message = check["ElseSteps"][0]["Arguments"]["ErrorMessage"]
    values = message["Std:Join"]["Values"]
    assert values[-1] == {"Get": "Parameters.MaxRmse"}
    assert not any("Std:JsonGet" in str(value) for value in values)


def test_the_package_names_the_commit_the_gitlab_pipeline_and_the_run(aws, monkeypatch):
    sha = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("CI_COMMIT_SHA", sha)
    monkeypatch.setenv("CI_PROJECT_URL", "https://gitlab.example.com/ml/model-build-p-abc123def456")
    monkeypatch.setenv("CI_PIPELINE_URL", "https://gitlab.example.com/ml/model-build-p-abc123def456/-/pipelines/7")
    project = run_pipeline.project_from_env()
    session = PipelineSession(boto_session=aws, default_bucket=project.bucket)
    definition = json.loads(get_pipeline(project, session, "s3://example/penguins.csv").definition())
    [register] = [step for step in steps_by_name(definition).values() if step["Type"] == "RegisterModel"]
    arguments = register["Arguments"]
    assert arguments["MetadataProperties"]["CommitId"] == sha
    assert arguments["MetadataProperties"]["Repository"].endswith("/ml/model-build-p-abc123def456")
    assert arguments["MetadataProperties"]["GeneratedBy"] == {"Get": "Execution.PipelineExecutionArn"}
    assert arguments["MetadataProperties"]["ProjectId"] == PROJECT_ENV["SAGEMAKER_PROJECT_ID"]
    assert arguments["CustomerMetadataProperties"] == {
        "GitCommit": sha,
        "GitLabPipelineUrl": "https://gitlab.example.com/ml/model-build-p-abc123def456/-/pipelines/7",
    }


def test_a_run_from_ci_is_named_after_its_commit(aws, monkeypatch):
    monkeypatch.setenv("CI_COMMIT_SHA", "89abcdef0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("CI_PIPELINE_URL", "https://gitlab.example.com/ml/b/-/pipelines/9")
    assert run_pipeline.main(["--no-wait"]) == 0
    name = f"{PROJECT_ENV['SAGEMAKER_PROJECT_NAME']}-{PROJECT_ENV['SAGEMAKER_PROJECT_ID']}"
    sagemaker = aws.client("sagemaker")
    [run] = sagemaker.list_pipeline_executions(PipelineName=name)["PipelineExecutionSummaries"]
    described = sagemaker.describe_pipeline_execution(PipelineExecutionArn=run["PipelineExecutionArn"])
    assert described["PipelineExecutionDisplayName"] == "commit-89abcdef"
    assert described["PipelineExecutionDescription"] == "GitLab pipeline https://gitlab.example.com/ml/b/-/pipelines/9"
