"""Evaluation step: scores the trained model on the held-out test rows.

Runs inside SageMaker's XGBoost container with the training job's model.tar.gz under
/opt/ml/processing/model and the test split under /opt/ml/processing/test. Writes
evaluation.json in SageMaker's model quality format: the pipeline's condition reads
regression_metrics.rmse.value from it, and the model registry shows it next to the model.
"""

import argparse
import json
import logging
import pathlib
import tarfile

import numpy as np
import xgboost

LOG = logging.getLogger("evaluate")


def load_model(model_dir: pathlib.Path) -> xgboost.Booster:
    archive = model_dir / "model.tar.gz"
    if not archive.exists():
        raise SystemExit(f"{archive} does not exist: the training step produced no model")
    with tarfile.open(archive) as tar:
        # The built-in algorithm names its model file xgboost-model (found by its base name, so
        # ./xgboost-model is found too). Read in memory: nothing from the archive touches the disk.
        found = [m for m in tar.getmembers() if m.isfile() and pathlib.PurePosixPath(m.name).name == "xgboost-model"]
        if not found:
            raise SystemExit(f"{archive} holds no xgboost-model file")
        member = tar.extractfile(found[0])
        booster = xgboost.Booster()
        booster.load_model(bytearray(member.read()))
        return booster


def regression_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict:
    errors = predictions - labels
    squared = errors**2
    return {
        "regression_metrics": {
            "mse": {"value": float(squared.mean()), "standard_deviation": float(squared.std())},
            "rmse": {"value": float(np.sqrt(squared.mean())), "standard_deviation": float(errors.std())},
            "mae": {"value": float(np.abs(errors).mean()), "standard_deviation": float(np.abs(errors).std())},
        }
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", type=pathlib.Path, default=pathlib.Path("/opt/ml/processing"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    booster = load_model(args.base_dir / "model")
    test = np.loadtxt(args.base_dir / "test" / "test.csv", delimiter=",", ndmin=2)
    labels, features = test[:, 0], test[:, 1:]
    predictions = booster.predict(xgboost.DMatrix(features))
    report = regression_metrics(labels, predictions)
    LOG.info("test rows: %d, rmse: %.3f", len(labels), report["regression_metrics"]["rmse"]["value"])

    out = args.base_dir / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
