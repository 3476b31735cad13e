"""Creates, updates or deletes one stage's endpoint stack and waits until CloudFormation is done."""

import time

from botocore.exceptions import ClientError

DONE = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
FAILED = {
    "CREATE_FAILED",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_FAILED",
    "DELETE_COMPLETE",
    "DELETE_FAILED",
}


class DeployFailed(Exception):
    """The stack did not reach a complete state; the message carries CloudFormation's reasons."""


def stack_name(project_name: str, project_id: str, stage: str) -> str:
    # The CI role may only touch stacks named sagemaker-*.
    return f"sagemaker-{project_name}-{project_id}-{stage}"


def current_status(cfn, name: str) -> str | None:
    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    except ClientError as err:
        if "does not exist" in err.response["Error"]["Message"]:
            return None
        raise


def deploy(cfn, name: str, template: str, parameters: dict, tags: dict, poll_seconds: float, timeout_seconds: float) -> dict:
    """Brings stack `name` to `template` with `parameters`; returns its outputs. Raises
    DeployFailed, naming the failed resources, when CloudFormation rolls back."""
    arguments = {
        "StackName": name,
        "TemplateBody": template,
        "Parameters": [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in sorted(parameters.items())],
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
    }
    status = current_status(cfn, name)
    if status == "ROLLBACK_COMPLETE":
        # A stack whose creation failed can only be deleted; this deploy starts it over.
        print(f"stack {name} is left from a failed creation: deleting it first", flush=True)
        cfn.delete_stack(StackName=name)
        wait(cfn, name, poll_seconds, timeout_seconds, until={"DELETE_COMPLETE"})
        status = None
    started = time.time()
    if status is None:
        print(f"creating stack {name}", flush=True)
        cfn.create_stack(**arguments)
    else:
        try:
            cfn.update_stack(**arguments)
            print(f"updating stack {name}", flush=True)
        except ClientError as err:
            if "No updates are to be performed" not in err.response["Error"]["Message"]:
                raise
            print(f"stack {name} already serves this model with this configuration", flush=True)
            return outputs(cfn, name)
    wait(cfn, name, poll_seconds, timeout_seconds, until=DONE, since=started)
    return outputs(cfn, name)


def wait(cfn, name: str, poll_seconds: float, timeout_seconds: float, until: set[str], since: float = 0.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while True:
        status = current_status(cfn, name)
        if status is None and "DELETE_COMPLETE" in until:
            # A deleted stack is gone from describe_stacks by name.
            return
        if status in until:
            print(f"stack {name}: {status}", flush=True)
            return
        if status in FAILED or (status or "").endswith("_FAILED"):
            raise DeployFailed(f"stack {name} ended {status}: {failure_reasons(cfn, name, since)}")
        if time.monotonic() > deadline:
            raise DeployFailed(f"stack {name} is still {status} after {timeout_seconds:.0f} s")
        time.sleep(poll_seconds)


def failure_reasons(cfn, name: str, since: float) -> str:
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    reasons = [
        f"{event['LogicalResourceId']} {event['ResourceStatus']}: {event['ResourceStatusReason']}"
        for event in reversed(events)
        if event["ResourceStatus"].endswith("_FAILED") and event.get("ResourceStatusReason") and event["Timestamp"].timestamp() >= since
    ]
    return "; ".join(reasons) or "CloudFormation gave no reason; see the stack's events"


def outputs(cfn, name: str) -> dict:
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def delete(cfn, name: str, poll_seconds: float, timeout_seconds: float) -> bool:
    """Deletes stack `name` (its endpoint, endpoint config and model) and waits until it is gone;
    False when there was no such stack."""
    if current_status(cfn, name) is None:
        return False
    started = time.time()
    cfn.delete_stack(StackName=name)
    try:
        wait(cfn, name, poll_seconds, timeout_seconds, until={"DELETE_COMPLETE"}, since=started)
    except DeployFailed as err:
        raise DeployFailed(f"deleting: {err}") from None
    return True
