"""How a table's raw columns become the network's inputs, and its outputs the user's labels or
units: scikit-learn's ``ColumnTransformer``, fitted on the training rows of each split (each
fold's, or all non-test rows for the delivered model), never on the rows it is measured on.

- numbers: missing values imputed by the median (with a 0/1 column saying which were
  missing), then standardised;
- categories: one-hot, a missing value its own category, a category never seen in training
  all zeros, and categories rarer than :data:`MIN_FREQUENCY` rows (or beyond
  :data:`MAX_CATEGORIES` a column) pooled into one.

The target's scale (a regression target standardised by the study's training split) is a unit
of measurement shared by every split, so that losses compare across folds; class labels are
numbered in sorted order and given back as they were.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core._table import ColumnPlan

MAX_CATEGORIES = 20  # a column's one-hot inputs at most (the rarer categories pooled)
MIN_FREQUENCY = 5  # rows a category needs for an input of its own
TRANSFORMER, SPEC = "transformer.joblib", "preprocessing.json"


def column_transformer(plan: ColumnPlan) -> Any:
    """The unfitted ``ColumnTransformer`` of ``plan``: what a scikit-learn pipeline (the peer)
    puts before its model."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", add_indicator=True)),
            ("scale", StandardScaler()),
        ]
    )
    categories = OneHotEncoder(
        handle_unknown="infrequent_if_exist",
        min_frequency=MIN_FREQUENCY,
        max_categories=MAX_CATEGORIES,
        sparse_output=False,
    )
    return ColumnTransformer(
        [
            ("numbers", numbers, list(plan.numbers)),
            ("categories", categories, list(plan.categories)),
        ],
        sparse_threshold=0.0,
    )


def as_columns(plan: ColumnPlan, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s input columns as the transformer takes them: numbers as floats (a value
    that is not a finite number is missing), categories as text (a whole number as ``"3"`` whether
    it came as 3 or 3.0), missing values as NaN. An input column that is absent is missing
    in every row."""
    frame = pd.DataFrame(frame).reindex(columns=list(plan.inputs))
    out = {}
    for column in plan.inputs:
        values = frame[column]
        if column in plan.categories:
            out[column] = _as_text(values)
        else:
            numbers = pd.to_numeric(values, errors="coerce").astype(float)
            out[column] = numbers.where(np.isfinite(numbers))  # an infinity is missing too
    return pd.DataFrame(out, index=frame.index)


def _as_text(values: pd.Series) -> pd.Series:
    present = values.notna()
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype(float)
        if np.all(np.mod(numbers[present], 1) == 0):
            values = numbers.astype("Int64")
    return values.astype(str).where(present, np.nan).astype(object)


@dataclass(frozen=True)
class Preprocessing:
    """A fitted preprocessing: raw frame in, the network's inputs out; the network's outputs
    back as labels or target values. ``transformer`` None: the inputs are the columns as
    given (the chapter's sine)."""

    plan: ColumnPlan
    transformer: Any = None
    y_mean: float = 0.0
    y_std: float = 1.0
    classes: tuple[Any, ...] = ()  # the labels as given, in the order of the network's classes

    @property
    def features(self) -> tuple[str, ...]:
        return self.plan.inputs

    def fitted(self, frame: pd.DataFrame) -> Preprocessing:
        """A copy whose transformer is fitted on ``frame``'s rows (and nothing else)."""
        if self.transformer is None:
            return self
        from sklearn.base import clone

        transformer = clone(self.transformer).fit(as_columns(self.plan, frame))
        return replace(self, transformer=transformer)

    def inputs(self, frame: pd.DataFrame) -> np.ndarray:
        """The network's inputs for the rows of ``frame`` (raw columns, by name)."""
        columns = as_columns(self.plan, frame)
        if self.transformer is None:
            return columns.to_numpy(dtype=float)
        if len(columns) == 0:
            return np.empty((0, len(self.transformer.get_feature_names_out())))
        return np.asarray(self.transformer.transform(columns), dtype=float)

    def outputs(self, predicted: np.ndarray) -> np.ndarray:
        """The network's predictions (class numbers, or scaled targets) in the data's terms."""
        if self.classes:
            return np.asarray(self.classes)[predicted]
        return predicted * self.y_std + self.y_mean

    def save(self, folder: str | Path) -> None:
        """``preprocessing.json`` (the plan, the target's scale, the labels) and, when there is
        one, ``transformer.joblib``: a pickle of scikit-learn's classes alone."""
        import joblib

        folder = Path(folder)
        spec = {
            "plan": self.plan.to_dict(),
            "y_mean": self.y_mean,
            "y_std": self.y_std,
            "classes": [_plain(c) for c in self.classes],
        }
        (folder / SPEC).write_text(json.dumps(spec, indent=1))
        if self.transformer is not None:
            joblib.dump(self.transformer, folder / TRANSFORMER)

    @classmethod
    def load(cls, folder: str | Path) -> Preprocessing:
        import joblib

        folder = Path(folder)
        spec = json.loads((folder / SPEC).read_text())
        plan = spec["plan"]
        columns = ColumnPlan(
            plan["kinds"],
            tuple(plan["numbers"]),
            tuple(plan["categories"]),
            plan["dropped"],
            plan["gaps"],
        )
        path = folder / TRANSFORMER
        transformer = joblib.load(path) if path.exists() else None
        classes = tuple(spec["classes"])
        return cls(columns, transformer, float(spec["y_mean"]), float(spec["y_std"]), classes)


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (labels go to JSON and back)."""
    return value.item() if isinstance(value, np.generic) else value
