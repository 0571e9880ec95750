"""A peer in the comparison: scikit-learn's MLP on the study's own splits, with the hidden sizes
of the chosen configuration. Not a baseline of the study (not a trial; Optuna never sees it):
a reference a user knows, measured the same way, chosen on validation and tested once.

Two rows: scikit-learn's defaults, and its L2 strength ``alpha`` chosen on the validation split
from :data:`ALPHAS` by the study's metric. Losses are the project's: mean squared error over
every output for regression, mean cross-entropy for classification.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from joblib import Parallel, delayed

from pipeline.core import Dataset, mean_of, splits_of
from pipeline.names import PEER_PREFIX

ALPHAS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # 1e-4 is scikit-learn's default
DEFAULT_ALPHA = 1e-4
# row names, also MLflow metric prefixes (which allow no colon or comma), and how they read
DEFAULT = f"{PEER_PREFIX}sklearn-defaults"
TUNED_ALPHA = f"{PEER_PREFIX}sklearn-alpha"
LABELS = {
    DEFAULT: "peer: scikit-learn MLP, its defaults",
    TUNED_ALPHA: "peer: scikit-learn MLP, alpha chosen on validation",
}


def _fit(d: Dataset, hidden: tuple[int, ...], alpha: float, seed: int) -> Any:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    kind = MLPClassifier if d.task == "classification" else MLPRegressor
    model = kind(hidden_layer_sizes=hidden, alpha=alpha, random_state=seed)
    y = d.y_train
    if d.task == "regression" and y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # one target: the 1-D form scikit-learn expects
    with warnings.catch_warnings():  # its 200 iterations, as a user gets them
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(d.X_train, y)


def _metrics(model: Any, X: np.ndarray, y: np.ndarray, task: str) -> dict[str, float]:
    if task == "regression":
        predicted = model.predict(X).reshape(len(y), -1)
        return {"loss": float(np.mean((predicted - y.reshape(len(y), -1)) ** 2))}
    probs = model.predict_proba(X)
    index = np.searchsorted(model.classes_, y)
    picked = np.maximum(probs[np.arange(len(y)), index], np.finfo(float).tiny)
    return {
        "loss": float(-np.log(picked).mean()),
        "accuracy": float((model.classes_[probs.argmax(axis=1)] == y).mean()),
    }


def _fit_and_measure(
    d: Dataset, hidden: tuple[int, ...], alpha: float, seed: int, folds: int | None
) -> tuple[dict[str, float], dict[str, float]]:
    """Validation and test metrics of one ``alpha``: means over the folds with
    cross-validation (the study's folds), else on the study's split."""
    from threadpoolctl import threadpool_limits

    vals, tests = [], []
    with threadpool_limits(limits=1, user_api="blas"):
        for split in splits_of(d, folds, seed):
            model = _fit(split, hidden, alpha, seed)
            vals.append(_metrics(model, split.X_val, split.y_val, d.task))
            tests.append(_metrics(model, d.X_test, d.y_test, d.task))
    return mean_of(vals), mean_of(tests)


def peer_results(
    d: Dataset,
    hidden: tuple[int, ...],
    metric: str = "val_loss",
    seed: int = 0,
    n_jobs: int = 1,
    folds: int | None = None,
) -> dict[str, dict[str, float]]:
    """Row name -> ``alpha``, ``final_val_loss`` (and ``final_val_accuracy``), ``test_loss``
    (and ``test_accuracy``): scikit-learn's defaults, and ``alpha`` chosen on validation (or
    the study's folds) by ``metric`` (the study's). Every fit is tested, only the two rows are
    reported."""
    # joblib's default backend (loky): local processes, or the cluster's within _dask.end_on
    measured = Parallel(n_jobs=min(n_jobs, len(ALPHAS)))(
        delayed(_fit_and_measure)(d, tuple(hidden), alpha, seed, folds) for alpha in ALPHAS
    )
    by_alpha = dict(zip(ALPHAS, measured, strict=True))
    key = metric.removeprefix("val_")
    pick = max if key == "accuracy" else min
    chosen = pick(ALPHAS, key=lambda alpha: by_alpha[alpha][0][key])
    rows = {}
    for name, alpha in ((DEFAULT, DEFAULT_ALPHA), (TUNED_ALPHA, chosen)):
        val, test = by_alpha[alpha]
        rows[name] = {"alpha": alpha, **{f"final_val_{k}": v for k, v in val.items()}}
        rows[name] |= {f"test_{k}": v for k, v in test.items()}
    return rows
