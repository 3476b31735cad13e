"""The SageMaker Pipeline of this project: preprocess → train → evaluate → check → register.

    preprocess (scikit-learn)  penguins CSV → train / validation / test splits
    train      (XGBoost)       built-in algorithm, squared-error regression on body mass
    evaluate   (XGBoost image) RMSE, MAE on the test split → evaluation.json
    check                      RMSE ≤ MaxRmse ?  yes → register, no → fail with the figure
    register                   model package in <project>-<id>, PendingManualApproval

Approving the package in the registry starts the model-deploy repository's pipeline.
"""

from dataclasses import dataclass
from pathlib import Path

from sagemaker import image_uris
from sagemaker.estimator import Estimator
from sagemaker.inputs import TrainingInput
from sagemaker.metadata_properties import MetadataProperties
from sagemaker.model import Model
from sagemaker.model_metrics import MetricsSource, ModelMetrics
from sagemaker.processing import ProcessingInput, ProcessingOutput, ScriptProcessor
from sagemaker.sklearn.processing import SKLearnProcessor
from sagemaker.workflow.condition_step import ConditionStep
from sagemaker.workflow.execution_variables import ExecutionVariables
from sagemaker.workflow.conditions import ConditionLessThanOrEqualTo
from sagemaker.workflow.fail_step import FailStep
from sagemaker.workflow.functions import Join, JsonGet
from sagemaker.workflow.model_step import ModelStep
from sagemaker.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
from sagemaker.workflow.pipeline import Pipeline
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.properties import PropertyFile
from sagemaker.workflow.retry import (
    SageMakerJobExceptionTypeEnum,
    SageMakerJobStepRetryPolicy,
    StepExceptionTypeEnum,
    StepRetryPolicy,
)
from sagemaker.workflow.steps import CacheConfig, ProcessingStep, TrainingStep

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
# A busy region (no capacity, a throttled API, an internal error) should not fail a 15-minute
# run: each job step retries those for up to an hour, with backoff.
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
            SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT,
        ],
        interval_seconds=60,
        backoff_rate=2.0,
        expire_after_mins=60,
    ),
]
# Preprocessing the same data with the same code gives the same splits (a fixed seed): a run
# whose change is elsewhere reuses the last result instead of paying for the job again.
PREPROCESS_CACHE = CacheConfig(enable_caching=True, expire_after="P30D")


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

    preprocessor = SKLearnProcessor(
        framework_version=SKLEARN_VERSION,
        instance_type=processing_instance_type,
        instance_count=processing_instance_count,
        base_job_name=f"{project.pipeline_name}-preprocess",
        role=project.role_arn,
        sagemaker_session=session,
    )
    step_preprocess = ProcessingStep(
        name="Preprocess",
        step_args=preprocessor.run(
            code=str(SCRIPTS / "preprocess.py"),
            inputs=[ProcessingInput(source=input_data, destination="/opt/ml/processing/input")],
            outputs=[
                ProcessingOutput(output_name=split, source=f"/opt/ml/processing/{split}")
                for split in ("train", "validation", "test")
            ],
        ),
        cache_config=PREPROCESS_CACHE,
        retry_policies=RETRIES,
    )

    def split_uri(split: str):
        return step_preprocess.properties.ProcessingOutputConfig.Outputs[split].S3Output.S3Uri

    xgboost_image = image_uris.retrieve(
        "xgboost", region=project.region, version=XGBOOST_VERSION, instance_type="ml.m5.large"
    )
    estimator = Estimator(
        image_uri=xgboost_image,
        instance_type=training_instance_type,
        instance_count=1,
        output_path=f"{prefix}/models",
        base_job_name=f"{project.pipeline_name}-train",
        role=project.role_arn,
        sagemaker_session=session,
        hyperparameters=HYPERPARAMETERS,
        # The 3.0-5 container does not act on Debugger hooks or profiling: they would only
        # write to S3 and the log.
        disable_profiler=True,
        debugger_hook_config=False,
    )
    step_train = TrainingStep(
        name="Train",
        step_args=estimator.fit(
            inputs={
                "train": TrainingInput(split_uri("train"), content_type="text/csv"),
                "validation": TrainingInput(split_uri("validation"), content_type="text/csv"),
            }
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
    step_evaluate = ProcessingStep(
        name="Evaluate",
        step_args=evaluator.run(
            code=str(SCRIPTS / "evaluate.py"),
            inputs=[
                ProcessingInput(source=model_data, destination="/opt/ml/processing/model"),
                ProcessingInput(source=split_uri("test"), destination="/opt/ml/processing/test"),
            ],
            outputs=[ProcessingOutput(output_name="evaluation", source="/opt/ml/processing/evaluation")],
        ),
        property_files=[evaluation_report],
        retry_policies=RETRIES,
    )
    evaluation_uri = step_evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri

    model = Model(
        image_uri=xgboost_image,
        model_data=model_data,
        role=project.role_arn,
        sagemaker_session=session,
    )
    step_register = ModelStep(
        name="Register",
        step_args=model.register(
            content_types=["text/csv"],
            response_types=["text/csv"],
            inference_instances=["ml.t2.medium", "ml.m5.large"],
            transform_instances=["ml.m5.large"],
            model_package_group_name=project.model_package_group,
            approval_status=approval_status,
            # Lineage from an endpoint back to a commit: the package names the commit, the
            # repository, the GitLab pipeline and the SageMaker pipeline run that made it.
            metadata_properties=MetadataProperties(
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
                )
            ),
        ),
    )

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
        steps=[step_preprocess, step_train, step_evaluate, step_check],
        sagemaker_session=session,
    )
