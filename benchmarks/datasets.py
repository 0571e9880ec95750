"""Data sets no shipped sweep was written for, each swept with ``python -m pipeline init``'s
template exactly as a new user would get it: bundled sets, and generated families (irrelevant
features, label noise, few rows, many classes, regression with noise, a nonlinear regression
with irrelevant inputs). Generated sets are written as CSV files with fixed seeds; nothing in
the template is tuned to them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

BUNDLED = ("wine", "iris", "diabetes")


def _classification(**kw: object) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    def make() -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import make_classification

        return make_classification(random_state=0, **kw)  # type: ignore[arg-type]

    return make


def _regression(**kw: object) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    def make() -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import make_regression

        return make_regression(random_state=0, **kw)  # type: ignore[arg-type]

    return make


def _friedman() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_friedman1

    return make_friedman1(n_samples=400, n_features=10, noise=1.0, random_state=0)


GENERATED: dict[str, tuple[str, Callable[[], tuple[np.ndarray, np.ndarray]]]] = {
    # 3 classes, 40 features of which 28 carry nothing
    "irrelevant": (
        "classification",
        _classification(n_samples=400, n_features=40, n_informative=8, n_redundant=4, n_classes=3),
    ),
    # a fifth of the labels flipped at random
    "label-noise": ("classification", _classification(n_samples=400, n_features=20, flip_y=0.2)),
    "few-rows": (
        "classification",
        _classification(n_samples=120, n_features=10, n_informative=5),
    ),
    "many-classes": (
        "classification",
        _classification(
            n_samples=800, n_features=20, n_informative=12, n_classes=8, n_clusters_per_class=1
        ),
    ),
    "noisy-regression": (
        "regression",
        _regression(n_samples=400, n_features=10, n_informative=5, noise=20.0),
    ),
    "friedman": ("regression", _friedman),  # nonlinear; 5 of 10 inputs irrelevant
}


def new_data_sweeps(folder: Path) -> dict[str, Path]:
    """Name -> a sweep file written by the init template into ``folder`` (with the generated
    sets' CSV files beside it)."""
    from pipeline.config import sweep_text

    sweeps = {}
    for name in BUNDLED:
        sweeps[name] = folder / f"new-{name}.toml"
        sweeps[name].write_text(sweep_text(name))
    for name, (task, make) in GENERATED.items():
        X, y = make()
        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
        frame["y"] = y
        csv = folder / f"{name}.csv"
        frame.to_csv(csv, index=False)
        sweeps[name] = folder / f"new-{name}.toml"
        sweeps[name].write_text(sweep_text(str(csv), "y", task))
    return sweeps
