"""Which model package a deployment serves, and the bytes of its model files."""

import hashlib


class NotDeployable(Exception):
    """The named model package cannot be deployed; the message says why."""


def select_model_package(sagemaker, group: str, explicit_arn: str | None) -> dict | None:
    """The package to deploy: `explicit_arn` when the approval event named one (the pipeline
    trigger passes MODEL_PACKAGE_ARN), else the newest approved package of `group`; None when
    the group has no approved package."""
    if explicit_arn:
        package = sagemaker.describe_model_package(ModelPackageName=explicit_arn)
        if package.get("ModelPackageGroupName") != group:
            raise NotDeployable(
                f"{explicit_arn} belongs to group {package.get('ModelPackageGroupName')}, not to this project's {group}"
            )
        if package["ModelApprovalStatus"] != "Approved":
            raise NotDeployable(f"{explicit_arn} is {package['ModelApprovalStatus']}, not Approved: approve it in the model registry first")
        return package
    newest = sagemaker.list_model_packages(
        ModelPackageGroupName=group,
        ModelApprovalStatus="Approved",
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=1,
    )["ModelPackageSummaryList"]
    if not newest:
        return None
    return sagemaker.describe_model_package(ModelPackageName=newest[0]["ModelPackageArn"])


def model_data_urls(package: dict) -> list[str]:
    """The S3 URLs of the package's model files, one per container that has one."""
    containers = package.get("InferenceSpecification", {}).get("Containers", [])
    return [c["ModelDataUrl"] for c in containers if c.get("ModelDataUrl")]


def sha256_of(s3, url: str) -> str:
    """The SHA-256 (hex) of the S3 object at `url`, read in 1 MiB pieces."""
    bucket, key = url.removeprefix("s3://").split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    for piece in iter(lambda: body.read(1 << 20), b""):
        digest.update(piece)
    return digest.hexdigest()
