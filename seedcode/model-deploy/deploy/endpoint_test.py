"""Calls a deployed endpoint with sample rows and checks what it answers."""

import math
import re
from pathlib import Path


class EndpointTestFailed(Exception):
    """The endpoint answered, but not with what the sample rows call for."""


def read_sample(path: Path) -> tuple[list[float], list[str]]:
    """Labels and feature rows of a CSV in the model's input format, label first; lines
    starting with # are comments."""
    labels, rows = [], []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        label, features = line.split(",", 1)
        labels.append(float(label))
        rows.append(features)
    if not rows:
        raise EndpointTestFailed(f"{path} holds no sample rows")
    return labels, rows


def check_predictions(body: str, labels: list[float], max_mean_absolute_error: float) -> float:
    """Parses the endpoint's answer (one number per row, by comma or line) and returns the mean
    absolute error, raising EndpointTestFailed when the answer is not that or too far off."""
    fields = [field for field in re.split(r"[,\s]+", body.strip()) if field]
    try:
        predictions = [float(field) for field in fields]
    except ValueError:
        raise EndpointTestFailed(f"the endpoint answered {body[:200]!r}, not one number per row") from None
    if len(predictions) != len(labels):
        raise EndpointTestFailed(f"{len(labels)} rows sent, {len(predictions)} predictions received")
    if not all(math.isfinite(p) for p in predictions):
        raise EndpointTestFailed(f"the endpoint answered non-finite predictions: {predictions}")
    error = sum(abs(p - label) for p, label in zip(predictions, labels)) / len(labels)
    if error > max_mean_absolute_error:
        raise EndpointTestFailed(f"mean absolute error {error:.1f} on the sample rows is above {max_mean_absolute_error}")
    return error


def run(runtime, endpoint_name: str, sample: Path, max_mean_absolute_error: float) -> float:
    labels, rows = read_sample(sample)
    response = runtime.invoke_endpoint(
        EndpointName=endpoint_name, ContentType="text/csv", Accept="text/csv", Body="\n".join(rows).encode()
    )
    return check_predictions(response["Body"].read().decode(), labels, max_mean_absolute_error)
