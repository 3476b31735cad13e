"""Shared fixtures: the tests run offline, against moto's in-process AWS."""

import os
import pathlib

import boto3
import pytest
from moto import mock_aws

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
REGION = "us-east-1"
# SageMaker Python SDK v3 makes a boto3 client while it is imported (sagemaker/ai_registry/air_hub.py,
# class AIRHub), which fails without a region: set one before any test module imports it.
os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
PROJECT_ENV = {
    "SAGEMAKER_PROJECT_NAME": "penguins",
    "SAGEMAKER_PROJECT_ID": "p-abc123def456",
    "AWS_REGION": REGION,
    "SAGEMAKER_PIPELINE_ROLE_ARN": "arn:aws:iam::123456789012:role/service-role/AmazonSageMakerServiceCatalogProductsUseRole",
    "ARTIFACT_BUCKET": "sagemaker-project-p-abc123def456",
    "MODEL_PACKAGE_GROUP_NAME": "penguins-p-abc123def456",
}


@pytest.fixture
def aws(monkeypatch):
    """moto's AWS with the project's artifact bucket and the CI/CD variables exported."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in PROJECT_ENV.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=PROJECT_ENV["ARTIFACT_BUCKET"])
        yield boto3.Session(region_name=REGION)
