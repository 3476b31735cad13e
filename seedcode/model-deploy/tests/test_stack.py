"""Waiting on CloudFormation: what a failed or stuck stack does to the job. moto creates
every stack successfully, so these runs are scripted the way CloudFormation reports them."""

from datetime import datetime, timezone

import pytest
from botocore.exceptions import ClientError

from deploy import stack


class ScriptedCloudFormation:
    def __init__(self, statuses, exists=True):
        self.statuses = list(statuses)
        self.exists = exists
        self.calls = []

    def describe_stacks(self, StackName):
        if not self.exists:
            raise ClientError({"Error": {"Code": "ValidationError", "Message": f"Stack with id {StackName} does not exist"}}, "DescribeStacks")
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"Stacks": [{"StackStatus": status, "Outputs": [{"OutputKey": "EndpointName", "OutputValue": "penguins-staging"}]}]}

    def describe_stack_events(self, StackName):
        now = datetime.now(timezone.utc)
        return {
            "StackEvents": [
                {"LogicalResourceId": "Endpoint", "ResourceStatus": "CREATE_FAILED", "ResourceStatusReason": "ResourceLimitExceeded: ml.m5.large for endpoint usage", "Timestamp": now},
                {"LogicalResourceId": "Model", "ResourceStatus": "CREATE_COMPLETE", "Timestamp": now},
            ]
        }

    def create_stack(self, **arguments):
        self.calls.append("create")
        self.exists = True

    def update_stack(self, **arguments):
        self.calls.append("update")

    def delete_stack(self, StackName):
        self.calls.append("delete")
        self.exists = False


def deploy(cfn, timeout_seconds=60):
    return stack.deploy(cfn, "sagemaker-penguins-p-abc123def456-staging", "{}", {"StageName": "staging"}, {}, 0, timeout_seconds)


def test_a_rolled_back_creation_fails_naming_the_resource_and_reason():
    cfn = ScriptedCloudFormation(["CREATE_IN_PROGRESS", "ROLLBACK_IN_PROGRESS", "ROLLBACK_COMPLETE"], exists=False)
    with pytest.raises(stack.DeployFailed, match="ended ROLLBACK_COMPLETE: Endpoint CREATE_FAILED: ResourceLimitExceeded"):
        deploy(cfn)
    assert cfn.calls == ["create"]


def test_a_stack_left_from_a_failed_creation_is_deleted_then_created():
    cfn = ScriptedCloudFormation(["ROLLBACK_COMPLETE", "CREATE_IN_PROGRESS", "CREATE_COMPLETE"])
    assert deploy(cfn) == {"EndpointName": "penguins-staging"}
    assert cfn.calls == ["delete", "create"]


def test_an_update_waits_until_complete():
    cfn = ScriptedCloudFormation(["UPDATE_COMPLETE", "UPDATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "UPDATE_COMPLETE"])
    assert deploy(cfn) == {"EndpointName": "penguins-staging"}
    assert cfn.calls == ["update"]


def test_a_failed_update_fails_the_job():
    cfn = ScriptedCloudFormation(["UPDATE_COMPLETE", "UPDATE_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE"])
    with pytest.raises(stack.DeployFailed, match="ended UPDATE_ROLLBACK_COMPLETE"):
        deploy(cfn)


def test_a_stack_still_in_progress_at_the_timeout_fails_the_job():
    cfn = ScriptedCloudFormation(["CREATE_IN_PROGRESS"], exists=False)
    with pytest.raises(stack.DeployFailed, match="still CREATE_IN_PROGRESS after 0 s"):
        deploy(cfn, timeout_seconds=0)
