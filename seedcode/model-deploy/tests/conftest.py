"""Shared fixtures: the tests run offline, against moto's in-process AWS."""

import boto3
import pytest
from moto import mock_aws

REGION = "us-east-1"
GROUP = "penguins-p-abc123def456"
PROJECT_ENV = {
    "SAGEMAKER_PROJECT_NAME": "penguins",
    "SAGEMAKER_PROJECT_ID": "p-abc123def456",
    "AWS_REGION": REGION,
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


def register(session, status: str, group: str = GROUP) -> str:
    """A model package version in `group` with `status`, as the build pipeline's Register step makes it."""
    sagemaker = session.client("sagemaker")
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=group,
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5", "ModelDataUrl": "s3://bucket/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )["ModelPackageArn"]
    if status != "PendingManualApproval":
        sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status)
    return arn
