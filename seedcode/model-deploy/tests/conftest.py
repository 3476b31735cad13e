"""Shared fixtures: the tests run offline, against moto's in-process AWS."""

import pathlib

import boto3
import pytest
from moto import mock_aws

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
REGION = "us-east-1"
GROUP = "penguins-p-abc123def456"
PROJECT_ENV = {
    "SAGEMAKER_PROJECT_NAME": "penguins",
    "SAGEMAKER_PROJECT_ID": "p-abc123def456",
    "AWS_REGION": REGION,
    "ARTIFACT_BUCKET": "sagemaker-project-p-abc123def456",
    "MODEL_PACKAGE_GROUP_NAME": GROUP,
    "MODEL_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/service-role/AmazonSageMakerServiceCatalogProductsUseRole",
}


@pytest.fixture
def aws(monkeypatch, tmp_path):
    """moto's AWS with the project's model package group and CI/CD variables."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    for name in ("AWS_PROFILE", "MODEL_PACKAGE_ARN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in PROJECT_ENV.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        session.client("sagemaker").create_model_package_group(ModelPackageGroupName=GROUP)
        yield session


BASELINE = "s3://sagemaker-project-p-abc123def456/penguins-p-abc123def456/runs/exec1/data-quality-baseline"


def upload_model(session, body: bytes = b"a trained model") -> str:
    """A model file in the project bucket, where the build's training job writes it; its URL."""
    s3 = session.client("s3")
    bucket = PROJECT_ENV["ARTIFACT_BUCKET"]
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    key = f"{GROUP}/models/job-{len(s3.list_objects_v2(Bucket=bucket).get('Contents', []))}/output/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"


def register(session, status: str, group: str = GROUP, baseline: bool = True) -> str:
    """A model package version in `group` with `status`, as the build pipeline's Register step
    makes it: with its data-quality baseline unless `baseline` is False (an older package)."""
    sagemaker = session.client("sagemaker")
    metrics = {
        "ModelDataQuality": {
            "Statistics": {"ContentType": "application/json", "S3Uri": f"{BASELINE}/statistics.json"},
            "Constraints": {"ContentType": "application/json", "S3Uri": f"{BASELINE}/constraints.json"},
        }
    }
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=group,
        **({"ModelMetrics": metrics} if baseline else {}),
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5", "ModelDataUrl": upload_model(session)}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )["ModelPackageArn"]
    if status != "PendingManualApproval":
        sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status)
    return arn
