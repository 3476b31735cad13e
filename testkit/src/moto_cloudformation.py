"""CloudFormation's parameter validation, which moto 5.2.5 leaves out.

CloudFormation checks every parameter value against the template's Parameters section before it
creates or changes anything, and CreateStack, UpdateStack and CreateChangeSet answer a
ValidationError when one fails; moto takes any value, so a template that CloudFormation would
refuse passes the tests. The rules, from the CloudFormation User Guide, "Parameters" section
structure: AllowedPattern must match the whole value (each member of a CommaDelimitedList);
AllowedValues lists every value allowed; MinLength and MaxLength bound a String's length;
MinValue and MaxValue bound a Number (each member of a List<Number>); a value must be given for
every parameter without a Default, and for no parameter the template lacks. A
ConstraintDescription replaces the reason in the message.

The messages are CloudFormation's where they were seen in its answers: "Parameter 'P' must match
pattern ^...$" (aws/aws-connected-device-framework issue 183, CreateChangeSet, 2024),
"Parameter P failed to satisfy constraint: <ConstraintDescription>" (aws-ia/taskcat issue 627,
CreateStack, 2020), "Parameters: [P] must have values" and "Parameters: [P] do not exist in the
template". The length, bound, type and AllowedValues messages follow the same form; their exact
words were not seen.

Imported by moto_server.py before start.
"""
import re

from moto.cloudformation.exceptions import ValidationError
from moto.cloudformation.models import CloudFormationBackend, Stack


def validate_parameters(template, given):
    """Raises CloudFormation's ValidationError for the first parameter `given` (name to value)
    that the template's Parameters section refuses."""
    declared = (Stack.parse_template(template) or {}).get("Parameters") or {}
    unknown = sorted(name for name in given if name not in declared)
    if unknown:
        raise ValidationError(message=f"Parameters: [{', '.join(unknown)}] do not exist in the template")
    missing = sorted(name for name, spec in declared.items() if name not in given and "Default" not in spec)
    if missing:
        raise ValidationError(message=f"Parameters: [{', '.join(missing)}] must have values")
    for name, spec in declared.items():
        value = given.get(name, spec.get("Default"))
        reason = refusal(spec, "" if value is None else str(value))
        if reason:
            described = spec.get("ConstraintDescription")
            message = (
                f"Parameter {name} failed to satisfy constraint: {described}"
                if described
                else f"Parameter '{name}' {reason}"
            )
            raise ValidationError(message=message)


def refusal(spec, value):
    """Why `value` does not satisfy the parameter `spec`, or None."""
    kind = spec.get("Type", "String")
    listed = kind == "CommaDelimitedList" or kind.startswith("List<")
    members = [member.strip() for member in value.split(",")] if listed else [value]
    numeric = kind in ("Number", "List<Number>")
    for member in members:
        if numeric:
            try:
                number = float(member)
            except ValueError:
                return "must be a number"
            if "MinValue" in spec and number < float(spec["MinValue"]):
                return f"must be a number not less than {spec['MinValue']}"
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                return f"must be a number not greater than {spec['MaxValue']}"
        pattern = spec.get("AllowedPattern")
        if pattern is not None and re.fullmatch(pattern, member) is None:
            return f"must match pattern {pattern}"
        allowed = spec.get("AllowedValues")
        if allowed is not None and member not in [str(item) for item in allowed]:
            return "must be one of AllowedValues"
    if kind == "String":
        if "MinLength" in spec and len(value) < int(spec["MinLength"]):
            return f"must contain at least {spec['MinLength']} characters"
        if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
            return f"must contain at most {spec['MaxLength']} characters"
    return None


def _create_stack(self, name, template, parameters, *args, **kwargs):
    validate_parameters(template, parameters)
    return _moto_create_stack(self, name, template, parameters, *args, **kwargs)


def _update_stack(self, name, template, role_arn, parameters, tags):
    stack = self.get_stack(name)
    resolved = self._resolve_update_parameters(instance=stack, incoming_params=parameters)
    validate_parameters(template or stack.template, resolved)
    return _moto_update_stack(self, name, template, role_arn, parameters, tags)


def _create_change_set(self, stack_name, change_set_name, template, parameters, *args, **kwargs):
    validate_parameters(template, parameters)
    return _moto_create_change_set(self, stack_name, change_set_name, template, parameters, *args, **kwargs)


_moto_create_stack = CloudFormationBackend.create_stack
_moto_update_stack = CloudFormationBackend.update_stack
_moto_create_change_set = CloudFormationBackend.create_change_set
CloudFormationBackend.create_stack = _create_stack
CloudFormationBackend.update_stack = _update_stack
CloudFormationBackend.create_change_set = _create_change_set
