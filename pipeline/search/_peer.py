"""A peer in the comparison: scikit-learn's MLP as a user would run it on the same data. Not a
baseline of the study (not a trial; Optuna never sees it): a reference a user knows, chosen on
the study's own validation data and tested once.

Every row is a ``GridSearchCV`` over ``alpha`` (scikit-learn's L2 strength) whose ``cv`` is the
study's folds (without folds: its one training / validation split), scored by the study's
metric, then refitted on training + validation, as ``GridSearchCV`` does by default (or,
for a study that delivers its trial's own network, fitted on the training split alone):

- ``peer-sklearn-defaults``: scikit-learn's MLP as it comes, one hidden layer of 100 units and
  ``alpha`` 1e-4 (a grid of one);
- ``peer-sklearn-gridsearch``: the chosen network's hidden sizes, ``alpha`` from :data:`ALPHAS`;
- ``peer-sklearn-gridsearch-100``: scikit-learn's default size, ``alpha`` from :data:`ALPHAS`
  (absent when the chosen network has that size).

Validation figures are the chosen ``alpha``'s means over the folds; losses are the project's:
mean squared error over every output for regression, mean cross-entropy for classification.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from pipeline.core import Dataset, as_columns, column_transformer, fold_indices, pooled
from pipeline.names import PEER_PREFIX

ALPHAS = tuple(10.0**k for k in range(-5, 2))  # 1e-5 .. 10; 1e-4 is scikit-learn's default
DEFAULT_ALPHA = 1e-4
DEFAULT_HIDDEN = (100,)  # scikit-learn's hidden_layer_sizes
# row names, also MLflow metric prefixes (which allow no colon or comma), and how they read
DEFAULT = f"{PEER_PREFIX}sklearn-defaults"
TUNED_ALPHA = f"{PEER_PREFIX}sklearn-gridsearch"
TUNED_DEFAULT_SIZE = f"{PEER_PREFIX}sklearn-gridsearch-100"
LABELS = {
    DEFAULT: "peer: scikit-learn MLP as it comes (100 units, alpha 1e-4)",
    TUNED_ALPHA: "peer: scikit-learn MLP, same sizes, alpha by GridSearchCV",
    TUNED_DEFAULT_SIZE: "peer: scikit-learn MLP, 100 units, alpha by GridSearchCV",
}


def _scoring(task: str) -> dict[str, str]:
    if task == "regression":
        return {"loss": "neg_mean_squared_error"}
    return {"loss": "neg_log_loss", "accuracy": "accuracy"}


def _quiet_fit(estimator: Any, X: np.ndarray, y: np.ndarray) -> Any:
    """``estimator.fit(X, y)`` without its convergence warning: its 200 iterations, as a user
    gets them."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


def _search(
    d: Dataset,
    hidden: tuple[int, ...],
    alphas: tuple[float, ...],
    metric: str,
    seed: int,
    n_jobs: int,
    folds: int | None,
    refit: bool,
) -> dict[str, float]:
    """One row: the grid search over ``alphas``, refitted on training + validation (``refit``)
    or fitted on the training split alone, tested."""
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    kind = MLPClassifier if d.task == "classification" else MLPRegressor
    X, X_train, X_test = _inputs(d)
    _, y = pooled(d)
    if d.task == "regression" and y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # one target: the 1-D form scikit-learn expects
    key = metric.removeprefix("val_")
    search = GridSearchCV(
        _pipeline(d, kind(hidden_layer_sizes=hidden, random_state=seed)),
        {"mlp__alpha": list(alphas)},
        scoring=_scoring(d.task),
        refit=key,
        cv=fold_indices(d, folds, seed),
        n_jobs=min(n_jobs, len(alphas) * (folds or 1)),
    )
    _quiet_fit(search, X, y)
    best = search.best_index_
    row = {"alpha": float(search.best_params_["mlp__alpha"])}
    for name in _scoring(d.task):
        mean = float(search.cv_results_[f"mean_test_{name}"][best])
        row[f"final_val_{name}"] = -mean if name == "loss" else mean
    model = search.best_estimator_
    if not refit:  # as the study delivers: the training split only
        y_train = d.y_train[:, 0] if y.ndim == 1 and d.y_train.ndim == 2 else d.y_train
        model = _quiet_fit(clone(model), X_train, y_train)
    tested = _metrics(model, X_test, d.y_test, d.task)
    return row | {f"test_{k}": v for k, v in tested.items()}


def _pipeline(d: Dataset, mlp: Any) -> Any:
    """The MLP after the data set's own preprocessing, unfitted: fitted on each fold's
    training rows by the grid search, as the study's networks are (a set without a table,
    the chapter's sine, is given as it is)."""
    from sklearn.pipeline import Pipeline

    if d.table is None or d.preprocessing is None:
        return Pipeline([("mlp", mlp)])
    return Pipeline([("preprocess", column_transformer(d.preprocessing.plan)), ("mlp", mlp)])


def _inputs(d: Dataset) -> tuple[Any, Any, Any]:
    """What the pipeline takes: the pooled training + validation rows, the training rows and
    the test rows, raw (their columns as the preprocessing reads them), or, without a table,
    the splits' arrays."""
    if d.table is None or d.preprocessing is None:
        return pooled(d)[0], d.X_train, d.X_test
    table, plan = d.table, d.preprocessing.plan
    rows = np.concatenate([table.train, table.val])
    return tuple(as_columns(plan, table.frame.iloc[r]) for r in (rows, table.train, table.test))


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


def peer_results(
    d: Dataset,
    hidden: tuple[int, ...],
    metric: str = "val_loss",
    seed: int = 0,
    n_jobs: int = 1,
    folds: int | None = None,
    refit: bool = True,
) -> dict[str, dict[str, float]]:
    """Row name -> ``alpha``, ``final_val_loss`` (and ``final_val_accuracy``), ``test_loss``
    (and ``test_accuracy``) for each row of the module's docstring, ``alpha`` chosen by
    ``metric`` (the study's) on the study's folds (or its one split). ``refit``: fitted again
    on training + validation, as the study delivers with ``refit`` or ``ensemble``; else on the
    training split, as with ``deliver = "trial"``."""
    # GridSearchCV runs its fits with joblib: local processes, or the cluster's within
    # _dask.end_on
    rows = {
        DEFAULT: (DEFAULT_HIDDEN, (DEFAULT_ALPHA,)),
        TUNED_ALPHA: (tuple(hidden), ALPHAS),
        TUNED_DEFAULT_SIZE: (DEFAULT_HIDDEN, ALPHAS),
    }
    if tuple(hidden) == DEFAULT_HIDDEN:
        del rows[TUNED_DEFAULT_SIZE]
    return {
        name: _search(d, sizes, alphas, metric, seed, n_jobs, folds, refit)
        for name, (sizes, alphas) in rows.items()
    }
