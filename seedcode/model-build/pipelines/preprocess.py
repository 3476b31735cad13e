"""Processing step: turns the raw penguin measurements into XGBoost's CSV input.

Runs inside SageMaker's scikit-learn container, which mounts the input under
/opt/ml/processing/input and uploads /opt/ml/processing/{train,validation,test,baseline}
afterwards.
`--base-dir` points elsewhere for local runs and tests.

Output format (what the built-in XGBoost algorithm reads): no header, the label first,
then the features. The same feature layout is what the endpoint accepts, and a client can build
it from a raw measurement alone (README.md, "Input contract"): the three measurements as they are,
in millimetres (XGBoost's trees need no scaling), then one 0/1 column per known category, in the
fixed order of CATEGORIES. `baseline` holds the training rows without their label: exactly
what the endpoint is sent, so the data-quality baseline describes the requests it will see.
"""

import argparse
import logging
import pathlib

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

LOG = logging.getLogger("preprocess")

LABEL = "body_mass_g"
NUMERIC_FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]
# Fixed, not learned: the columns of the endpoint's input must not move with the data. A value
# outside these is all zeros in its group.
CATEGORIES = {
    "species": ["Adelie", "Chinstrap", "Gentoo"],
    "island": ["Biscoe", "Dream", "Torgersen"],
    "sex": ["female", "male"],
}
CATEGORICAL_FEATURES = list(CATEGORIES)
# Fixed, so that a re-run of the pipeline on the same data trains on the same split.
SPLIT_SEED = 42
SPLIT = {"train": 0.7, "validation": 0.15, "test": 0.15}


def feature_transformer() -> ColumnTransformer:
    return ColumnTransformer(
        [
            # Raw values; a measurement missing in the data gets the training median, so that no
            # training row is lost. Clients send all three.
            ("numeric", SimpleImputer(strategy="median"), NUMERIC_FEATURES),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(categories=list(CATEGORIES.values()), handle_unknown="ignore"),
                ),
                CATEGORICAL_FEATURES,
            ),
        ]
    )


def read_raw(path: pathlib.Path) -> pd.DataFrame:
    frame = pd.read_csv(path, na_values=["NA", ""])
    missing = [c for c in [LABEL, *NUMERIC_FEATURES, *CATEGORICAL_FEATURES] if c not in frame.columns]
    if missing:
        raise SystemExit(f"{path}: missing columns {missing}; expected the penguins CSV layout")
    # A row without a label cannot train or score anything.
    return frame.dropna(subset=[LABEL]).reset_index(drop=True)


def split(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    shuffled = frame.sample(frac=1.0, random_state=SPLIT_SEED).reset_index(drop=True)
    n_train = int(SPLIT["train"] * len(shuffled))
    n_validation = int(SPLIT["validation"] * len(shuffled))
    return {
        "train": shuffled.iloc[:n_train],
        "validation": shuffled.iloc[n_train : n_train + n_validation],
        "test": shuffled.iloc[n_train + n_validation :],
    }


def transform(parts: dict[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """Fits the transformer on the training rows only, so no test statistics leak into training."""
    transformer = feature_transformer()
    transformer.fit(parts["train"])
    return {
        name: np.column_stack([part[LABEL].to_numpy(dtype=float), dense(transformer.transform(part))])
        for name, part in parts.items()
    }


def dense(matrix) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", type=pathlib.Path, default=pathlib.Path("/opt/ml/processing"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    inputs = sorted((args.base_dir / "input").glob("*.csv"))
    if not inputs:
        raise SystemExit(f"no CSV file in {args.base_dir / 'input'}")
    frame = pd.concat([read_raw(path) for path in inputs], ignore_index=True)
    LOG.info("read %d labelled rows from %s", len(frame), ", ".join(p.name for p in inputs))

    outputs = transform(split(frame))
    outputs["baseline"] = outputs["train"][:, 1:]
    for name, rows in outputs.items():
        out = args.base_dir / name
        out.mkdir(parents=True, exist_ok=True)
        np.savetxt(out / f"{name}.csv", rows, delimiter=",", fmt="%.6g")
        LOG.info("wrote %d rows x %d columns to %s", rows.shape[0], rows.shape[1], out / f"{name}.csv")


if __name__ == "__main__":
    main()
