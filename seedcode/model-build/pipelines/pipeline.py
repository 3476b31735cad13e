"""The SageMaker Pipeline of this project: preprocess → baseline, train → evaluate → check → register.

    preprocess (scikit-learn)  penguins CSV → train / validation / test splits, and the training
                               features alone (the endpoint's input layout) for the baseline
    baseline   (Model Monitor) data-quality statistics and constraints of the training features
    train      (XGBoost)       built-in algorithm, squared-error regression on body mass
    evaluate   (XGBoost image) RMSE, MAE on the test split → evaluation.json
    check                      RMSE ≤ MaxRmse ?  yes → register, no → fail with the figure
    register                   model package in <project>-<id>, PendingManualApproval, carrying
                               the evaluation and the data-quality baseline the deploy monitors with

Approving the package in the registry starts the model-deploy repository's pipeline.

Written against the SageMaker Python SDK v3: the pipeline and its steps come from
sagemaker-mlops, training from sagemaker-train (ModelTrainer), registration from
sagemaker-serve (ModelBuilder), the rest from sagemaker-core.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from sagemaker.core import image_uris
from sagemaker.core.drift_check_baselines import DriftCheckBaselines
from sagemaker.core.metadata_properties import MetadataProperties
from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
from sagemaker.core.model_monitor.dataset_format import DatasetFormat
from sagemaker.core.processing import ScriptProcessor
from sagemaker.core.shapes import (
    OutputDataConfig,
    ProcessingInput,
    ProcessingOutput,
    ProcessingS3Input,
    ProcessingS3Output,
    StoppingCondition,
)
from sagemaker.core.training.configs import Compute, InputData
from sagemaker.core.workflow.conditions import ConditionLessThanOrEqualTo
from sagemaker.core.workflow.execution_variables import ExecutionVariables
from sagemaker.core.workflow.functions import Join, JsonGet
from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
from sagemaker.core.workflow.pipeline_context import PipelineSession
from sagemaker.core.workflow.properties import PropertyFile
from sagemaker.mlops.workflow.check_job_config import CheckJobConfig
from sagemaker.mlops.workflow.condition_step import ConditionStep
from sagemaker.mlops.workflow.fail_step import FailStep
from sagemaker.mlops.workflow.model_step import ModelStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.quality_check_step import DataQualityCheckConfig, QualityCheckStep
from sagemaker.mlops.workflow.retry import (
    SageMakerJobExceptionTypeEnum,
    SageMakerJobStepRetryPolicy,
    StepExceptionTypeEnum,
    StepRetryPolicy,
)
from sagemaker.mlops.workflow.steps import CacheConfig, ProcessingStep, TrainingStep
from sagemaker.serve.model_builder import ModelBuilder
from sagemaker.train.model_trainer import ModelTrainer

# The steps run as the project's SageMaker role, which CloudFormation made for them. SDK v3 would
# otherwise check that role when the pipeline is defined (sagemaker/core/helper/iam_role_resolver.py:
# iam:SimulatePrincipalPolicy and iam:GetRole on it), grants the project's CI role does not have.
os.environ.setdefault("SAGEMAKER_VALIDATE_ROLE", "false")

SCRIPTS = Path(__file__).resolve().parent
# The containers the steps run in. The unit tests pin the same library versions
# (requirements-dev.txt), so what passes here runs the same there.
SKLEARN_VERSION = "1.4-2"
XGBOOST_VERSION = "3.0-5"
# Hyperparameters of the built-in XGBoost algorithm; tune them here.
HYPERPARAMETERS = {
    "objective": "reg:squarederror",
    "num_round": 200,
    "max_depth": 4,
    "eta": 0.1,
    "subsample": 0.8,
    "min_child_weight": 2,
}
# A busy region should not fail a 15-minute run. Each job step retries a throttled or failing
# SageMaker API 4 times over about 7.5 minutes (30 s, doubling), and a job SageMaker could not
# place (no capacity, an internal error) for up to an hour (60 s, doubling). An exhausted quota
# (RESOURCE_LIMIT) is not retried: in a new account it is 0 for most instance types, and the
# error should name the quota at once. The data-quality baseline step takes no retry policy.
RETRIES = [
    StepRetryPolicy(
        exception_types=[StepExceptionTypeEnum.SERVICE_FAULT, StepExceptionTypeEnum.THROTTLING],
        interval_seconds=30,
        backoff_rate=2.0,
        max_attempts=5,
    ),
    SageMakerJobStepRetryPolicy(
        exception_types=[
            SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
            SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
        ],
        interval_seconds=60,
        backoff_rate=2.0,
        expire_after_mins=60,
    ),
]
# How long training may run before SageMaker stops it; ModelTrainer's own default is one hour.
TRAINING_MAX_RUNTIME_SECONDS = 24 * 3600
# Preprocessing the same data with the same code gives the same splits (a fixed seed): a run
# whose change is elsewhere reuses the last result instead of paying for the job again.
PREPROCESS_CACHE = CacheConfig(enable_caching=True, expire_after="P30D")
# The splits XGBoost trains and is tested on, and the training features alone for the baseline.
PREPROCESS_OUTPUTS = ("train", "validation", "test", "baseline")


@dataclass(frozen=True)
class Project:
    """Where the pipeline lives: the values GitLab CI gets from the project's CI/CD variables."""

    name: str
    id: str
    region: str
    role_arn: str
    bucket: str
    model_package_group: str
    # Where this run's code comes from: GitLab's predefined CI_COMMIT_SHA, CI_PROJECT_URL and
    # CI_PIPELINE_URL; empty outside CI.
    commit: str = ""
    repository_url: str = ""
    ci_pipeline_url: str = ""

    @property
    def pipeline_name(self) -> str:
        return f"{self.name}-{self.id}"

    @property
    def tags(self) -> list[dict[str, str]]:
        # These two tags are what links the pipeline to its project in SageMaker Studio.
        return [
            {"Key": "sagemaker:project-name", "Value": self.name},
            {"Key": "sagemaker:project-id", "Value": self.id},
        ]


def get_pipeline(project: Project, session: PipelineSession, input_data_url: str) -> Pipeline:
    processing_instance_type = ParameterString("ProcessingInstanceType", default_value="ml.m5.large")
    training_instance_type = ParameterString("TrainingInstanceType", default_value="ml.m5.large")
    processing_instance_count = ParameterInteger("ProcessingInstanceCount", default_value=1)
    approval_status = ParameterString("ModelApprovalStatus", default_value="PendingManualApproval")
    input_data = ParameterString("InputDataUrl", default_value=input_data_url)
    max_rmse = ParameterFloat("MaxRmse", default_value=400.0)
    prefix = f"s3://{project.bucket}/{project.pipeline_name}"
    run_prefix = Join(on="/", values=[prefix, "runs", ExecutionVariables.PIPELINE_EXECUTION_ID])

    sklearn_image = image_uris.retrieve(
        "sklearn", region=project.region, version=SKLEARN_VERSION, instance_type="ml.m5.large"
    )
    preprocessor = ScriptProcessor(
        image_uri=sklearn_image,
        command=["python3"],
        instance_type=processing_instance_type,
        instance_count=processing_instance_count,
        base_job_name=f"{project.pipeline_name}-preprocess",
        role=project.role_arn,
        sagemaker_session=session,
    )
    # Named after the code and the data this run reads, not the run: a cached run's outputs
    # stay where the run that made them put them, the same inputs always land in the same
    # place, and a run given other data never writes over them.
    preprocess_prefix = f"{prefix}/preprocess/{preprocess_code_key()}"
    step_preprocess = ProcessingStep(
        name="Preprocess",
        step_args=preprocessor.run(
            code=str(SCRIPTS / "preprocess.py"),
            inputs=[processing_input("input", input_data, "/opt/ml/processing/input")],
            outputs=[
                processing_output(
                    split, f"/opt/ml/processing/{split}", Join(on="/", values=[preprocess_prefix, input_data, split])
                )
                for split in PREPROCESS_OUTPUTS
            ],
        ),
        cache_config=PREPROCESS_CACHE,
        retry_policies=RETRIES,
    )

    def split_uri(split: str):
        return step_preprocess.properties.ProcessingOutputConfig.Outputs[split].S3Output.S3Uri

    # The statistics and constraints of what the endpoint will be sent; the deploy's monitoring
    # schedule compares the endpoint's captured requests with them. Left out in a region without
    # Model Monitor's analyzer image: the package then carries no baseline, and the deploy runs
    # its endpoints unmonitored, saying so.
    monitored = model_monitor_in(project.region)
    step_baseline = QualityCheckStep(
        name="DataQualityBaseline",
        quality_check_config=DataQualityCheckConfig(
            baseline_dataset=split_uri("baseline"),
            dataset_format=DatasetFormat.csv(header=False),
            output_s3_uri=Join(on="/", values=[run_prefix, "data-quality-baseline"]),
        ),
        check_job_config=CheckJobConfig(
            role=project.role_arn,
            instance_count=1,
            instance_type="ml.m5.large",
            base_job_name=f"{project.pipeline_name}-baseline",
            sagemaker_session=session,
        ),
        # A new model gets a new baseline: nothing to check against, only to compute.
        skip_check=True,
        register_new_baseline=True,
    ) if monitored else None

    xgboost_image = image_uris.retrieve(
        "xgboost", region=project.region, version=XGBOOST_VERSION, instance_type="ml.m5.large"
    )
    trainer = ModelTrainer(
        training_image=xgboost_image,
        compute=Compute(instance_type=training_instance_type, instance_count=1),
        output_data_config=OutputDataConfig(s3_output_path=f"{prefix}/models"),
        base_job_name=f"{project.pipeline_name}-train",
        role=project.role_arn,
        sagemaker_session=session,
        hyperparameters=HYPERPARAMETERS,
        stopping_condition=StoppingCondition(max_runtime_in_seconds=TRAINING_MAX_RUNTIME_SECONDS),
    )
    step_train = TrainingStep(
        name="Train",
        step_args=trainer.train(
            input_data_config=[
                InputData(channel_name=split, data_source=split_uri(split), content_type="text/csv")
                for split in ("train", "validation")
            ]
        ),
        retry_policies=RETRIES,
    )
    model_data = step_train.properties.ModelArtifacts.S3ModelArtifacts

    evaluator = ScriptProcessor(
        image_uri=xgboost_image,
        command=["python3"],
        instance_type=processing_instance_type,
        instance_count=1,
        base_job_name=f"{project.pipeline_name}-evaluate",
        role=project.role_arn,
        sagemaker_session=session,
    )
    evaluation_report = PropertyFile(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
    evaluation_prefix = Join(on="/", values=[run_prefix, "evaluation"])
    step_evaluate = ProcessingStep(
        name="Evaluate",
        step_args=evaluator.run(
            code=str(SCRIPTS / "evaluate.py"),
            inputs=[
                processing_input("model", model_data, "/opt/ml/processing/model"),
                processing_input("test", split_uri("test"), "/opt/ml/processing/test"),
            ],
            outputs=[processing_output("evaluation", "/opt/ml/processing/evaluation", evaluation_prefix)],
        ),
        property_files=[evaluation_report],
        retry_policies=RETRIES,
    )
    evaluation_uri = step_evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri

    def baseline(kind: str):
        return MetricsSource(s3_uri=getattr(step_baseline.properties, kind), content_type="application/json")

    model = ModelBuilder(
        image_uri=xgboost_image,
        s3_model_data_url=model_data,
        role_arn=project.role_arn,
        sagemaker_session=session,
    )
    register = model.register(
        content_types=["text/csv"],
        response_types=["text/csv"],
        inference_instances=["ml.t2.medium", "ml.m5.large"],
        transform_instances=["ml.m5.large"],
        model_package_group_name=project.model_package_group,
        approval_status=approval_status,
        # Lineage from an endpoint back to a commit: the package names the commit, the
        # repository, the GitLab pipeline and the SageMaker pipeline run that made it.
        metadata_properties=MetadataProperties(
            project_id=project.id,
            commit_id=project.commit or None,
            repository=project.repository_url or None,
            generated_by=ExecutionVariables.PIPELINE_EXECUTION_ARN,
        ),
        customer_metadata_properties={
            key: value
            for key, value in {"GitCommit": project.commit, "GitLabPipelineUrl": project.ci_pipeline_url}.items()
            if value
        }
        or None,
        model_metrics=ModelMetrics(
            model_statistics=MetricsSource(
                s3_uri=Join(on="/", values=[evaluation_uri, "evaluation.json"]),
                content_type="application/json",
            ),
            # What the deploy's data-quality monitoring schedule compares the endpoint's
            # traffic with (ModelMetrics.ModelDataQuality of the package).
            model_data_statistics=baseline("CalculatedBaselineStatistics") if monitored else None,
            model_data_constraints=baseline("CalculatedBaselineConstraints") if monitored else None,
        ),
        drift_check_baselines=DriftCheckBaselines(
            model_data_statistics=baseline("BaselineUsedForDriftCheckStatistics"),
            model_data_constraints=baseline("BaselineUsedForDriftCheckConstraints"),
        )
        if monitored
        else None,
    )
    without_empty_script_mode_variables(register.create_model_package_request)
    step_register = ModelStep(name="Register", step_args=register)

    rmse = JsonGet(step_name=step_evaluate.name, property_file=evaluation_report, json_path="regression_metrics.rmse.value")
    # A parameter in the message only, the form SageMaker's own examples use; the RMSE itself is
    # in the Evaluate step's report and the job log.
    step_fail = FailStep(
        name="RmseTooHigh",
        error_message=Join(on=" ", values=["the model's test RMSE (Evaluate step's report) is above MaxRmse", max_rmse]),
    )
    step_check = ConditionStep(
        name="CheckRmse",
        conditions=[ConditionLessThanOrEqualTo(left=rmse, right=max_rmse)],
        if_steps=[step_register],
        else_steps=[step_fail],
    )

    return Pipeline(
        name=project.pipeline_name,
        parameters=[
            processing_instance_type,
            processing_instance_count,
            training_instance_type,
            approval_status,
            input_data,
            max_rmse,
        ],
        steps=[step for step in (step_preprocess, step_baseline, step_train, step_evaluate, step_check) if step],
        sagemaker_session=session,
    )


def model_monitor_in(region: str) -> bool:
    """Whether the region has Model Monitor's analyzer image (the SDK's image_uri_config)."""
    try:
        image_uris.retrieve("model-monitor", region=region)
    except ValueError:
        return False
    return True


def without_empty_script_mode_variables(request: dict) -> None:
    """Drops the empty variables SDK v3's ModelBuilder gives every container (SAGEMAKER_PROGRAM,
    SAGEMAKER_SUBMIT_DIRECTORY) from the package's containers. The built-in XGBoost container
    serves in algorithm mode only when SAGEMAKER_PROGRAM is absent: sagemaker-containers reads it
    with os.environ.get and the container's serving.py tests `module_name is None`, so an empty
    value would make the endpoint import a module named "" and fail to start."""
    for container in request["InferenceSpecification"]["Containers"]:
        environment = container.get("Environment", {})
        for name in [name for name, value in environment.items() if value == ""]:
            del environment[name]


def processing_input(name: str, source, destination: str) -> ProcessingInput:
    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(s3_uri=source, local_path=destination, s3_data_type="S3Prefix", s3_input_mode="File"),
    )


def processing_output(name: str, source: str, destination) -> ProcessingOutput:
    return ProcessingOutput(
        output_name=name,
        s3_output=ProcessingS3Output(s3_uri=destination, local_path=source, s3_upload_mode="EndOfJob"),
    )


def preprocess_code_key() -> str:
    """The preprocessing code, hashed: with the input's URL, what the step's outputs depend on."""
    return hashlib.sha256((SCRIPTS / "preprocess.py").read_bytes()).hexdigest()[:16]
