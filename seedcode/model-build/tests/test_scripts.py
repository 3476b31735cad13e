"""The processing and evaluation scripts, run as the containers run them, on the committed data."""

import io
import json
import shutil
import tarfile

import numpy as np
import pandas as pd
import pytest
import xgboost

from pipelines import evaluate, pipeline, preprocess
from tests.conftest import REPO_ROOT

DATA = REPO_ROOT / "data" / "penguins.csv"
FEATURES = 3 + 3 + 3 + 2  # numeric, species, island, sex


def run_preprocess(base):
    (base / "input").mkdir(parents=True)
    shutil.copy(DATA, base / "input")
    preprocess.main(["--base-dir", str(base)])
    return {split: np.loadtxt(base / split / f"{split}.csv", delimiter=",") for split in ("train", "validation", "test")}


def train(base, rows):
    """Stands in for the training job: the built-in algorithm's objective and hyperparameters,
    and its model.tar.gz holding xgboost-model."""
    params = {k: v for k, v in pipeline.HYPERPARAMETERS.items() if k != "num_round"}
    booster = xgboost.train(params, xgboost.DMatrix(rows[:, 1:], label=rows[:, 0]), pipeline.HYPERPARAMETERS["num_round"])
    model = bytes(booster.save_raw("ubj"))
    (base / "model").mkdir(parents=True)
    with tarfile.open(base / "model" / "model.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(model)
        tar.addfile(info, io.BytesIO(model))


def test_preprocess_splits_every_labelled_row_into_label_first_features(tmp_path):
    splits = run_preprocess(tmp_path)

    labelled = sum(1 for line in DATA.read_text().splitlines()[1:] if line.split(",")[5] != "NA")
    assert sum(len(rows) for rows in splits.values()) == labelled
    assert [len(rows) for rows in splits.values()] == [int(0.7 * labelled), int(0.15 * labelled), labelled - int(0.7 * labelled) - int(0.15 * labelled)]
    for rows in splits.values():
        assert rows.shape[1] == 1 + FEATURES
        assert not np.isnan(rows).any()
        assert ((rows[:, 0] >= 2500) & (rows[:, 0] <= 6500)).all(), "the first column is the body mass label"
        assert set(np.unique(rows[:, 4:])) <= {0.0, 1.0}, "one-hot columns follow the numeric ones"
    # Raw millimetres, as a client measures them: no statistics of the training split in them.
    raw = pd.read_csv(DATA, na_values=["NA"]).dropna(subset=["body_mass_g"])
    for column, name in enumerate(preprocess.NUMERIC_FEATURES, start=1):
        low, high = raw[name].min(), raw[name].max()
        assert all(low <= v <= high for rows in splits.values() for v in rows[:, column]), name


def test_the_baseline_is_the_training_features_as_the_endpoint_receives_them(tmp_path):
    splits = run_preprocess(tmp_path)
    baseline = np.loadtxt(tmp_path / "baseline" / "baseline.csv", delimiter=",")
    # No label and no header: the data-quality monitor compares captured requests column by column.
    assert baseline.shape == (len(splits["train"]), FEATURES)
    np.testing.assert_array_equal(baseline, splits["train"][:, 1:])
    assert not (tmp_path / "baseline" / "baseline.csv").read_text().startswith("bill")


def test_every_row_is_the_raw_measurement_and_its_fixed_one_hot_columns(tmp_path):
    """The input contract of README.md: what a client sends is derived from one raw row alone."""
    splits = run_preprocess(tmp_path)
    raw = pd.read_csv(DATA, na_values=["NA"]).dropna(subset=[*preprocess.NUMERIC_FEATURES, "body_mass_g", "sex"])
    by_measurement = {tuple(r[preprocess.NUMERIC_FEATURES]) + (r["body_mass_g"],): r for _, r in raw.iterrows()}
    checked = 0
    for row in splits["test"]:
        source = by_measurement.get((row[1], row[2], row[3], row[0]))
        if source is None:
            continue  # a row whose measurement was missing in the data got the median
        expected = [float(source[name] == category) for name, values in preprocess.CATEGORIES.items() for category in values]
        assert list(row[4:]) == expected, (row, source.to_dict())
        checked += 1
    assert checked > 30


def test_a_category_outside_the_contract_is_all_zeros_not_a_new_column(tmp_path):
    (tmp_path / "input").mkdir()
    text = DATA.read_text().splitlines()
    header, rows = text[0], text[1:40]
    rows.append(rows[0].replace("Adelie", "Emperor"))
    (tmp_path / "input" / "penguins.csv").write_text("\n".join([header, *rows]) + "\n")
    preprocess.main(["--base-dir", str(tmp_path)])
    written = np.vstack([np.loadtxt(tmp_path / s / f"{s}.csv", delimiter=",", ndmin=2) for s in ("train", "validation", "test")])
    assert written.shape[1] == 1 + FEATURES


def test_preprocess_is_deterministic(tmp_path):
    run_preprocess(tmp_path / "a")
    run_preprocess(tmp_path / "b")
    for split in ("train", "validation", "test"):
        assert (tmp_path / "a" / split / f"{split}.csv").read_bytes() == (tmp_path / "b" / split / f"{split}.csv").read_bytes()


def test_preprocess_rejects_a_csv_without_the_expected_columns(tmp_path):
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit, match="missing columns"):
        preprocess.main(["--base-dir", str(tmp_path)])


def test_evaluate_reports_the_model_quality_that_the_condition_reads(tmp_path):
    splits = run_preprocess(tmp_path)
    train(tmp_path, splits["train"])

    evaluate.main(["--base-dir", str(tmp_path)])

    report = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    metrics = report["regression_metrics"]
    assert set(metrics) == {"mse", "rmse", "mae"}
    assert metrics["rmse"]["value"] == pytest.approx(np.sqrt(metrics["mse"]["value"]))
    # Better than always guessing the training mean, and inside the pipeline's default MaxRmse.
    test = splits["test"]
    baseline = np.sqrt(((test[:, 0] - splits["train"][:, 0].mean()) ** 2).mean())
    assert metrics["rmse"]["value"] < 0.6 * baseline
    assert metrics["rmse"]["value"] <= 400.0


def test_evaluate_fails_clearly_without_a_model(tmp_path):
    run_preprocess(tmp_path)
    with pytest.raises(SystemExit, match="produced no model"):
        evaluate.main(["--base-dir", str(tmp_path)])


def test_evaluate_names_an_archive_without_the_model_file(tmp_path):
    run_preprocess(tmp_path)
    (tmp_path / "model").mkdir()
    with tarfile.open(tmp_path / "model" / "model.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("something-else")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(SystemExit, match="holds no xgboost-model file"):
        evaluate.main(["--base-dir", str(tmp_path)])
