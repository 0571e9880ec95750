"""k-fold cross-validation splits: the training and validation data pooled and cut into k folds
(stratified for classification), each fold a :class:`Dataset` whose validation split is one
fold and whose training split is the rest. The test split is the study's own, untouched.

A data set read from a table fits its preprocessing again on each fold's training rows (and
on all of them for the delivered model), so that no statistic of the imputation, the one-hot
categories or the scaling has seen the rows a split is measured on; a fold's splits are made
once a process and reused by every trial there.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pipeline.core._data import Dataset, split_on


def pooled(d: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation data as one set, in that order."""
    return np.concatenate([d.X_train, d.X_val]), np.concatenate([d.y_train, d.y_val])


def smallest_class(d: Dataset) -> int:
    """Members of the rarest class in the pooled data (classification only)."""
    _, y = pooled(d)
    return int(np.unique(y, return_counts=True)[1].min())


def fold_indices(d: Dataset, folds: int | None, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows of the pooled data (training, then validation) fitted on and held out, split by
    split: ``folds`` folds shuffled by ``seed`` (stratified for classification), or without
    folds the study's one split. What a scikit-learn search takes as ``cv``."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if not folds:
        n_train = len(d.y_train)
        return [(np.arange(n_train), np.arange(n_train, n_train + len(d.y_val)))]
    X, y = pooled(d)
    if d.task == "classification":
        return list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(X, y))
    return list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(X))


def fold_splits(d: Dataset, folds: int, seed: int) -> list[Dataset]:
    """``folds`` splits of the pooled data, shuffled by ``seed``; the same for every trial of
    a study, so that trials are compared fold by fold."""
    if d.table is not None:
        rows = np.concatenate([d.table.train, d.table.val])
        return [split_on(d, rows[fit], rows[held]) for fit, held in fold_indices(d, folds, seed)]
    X, y = pooled(d)
    return [
        replace(d, X_train=X[fit], y_train=y[fit], X_val=X[held], y_val=y[held])
        for fit, held in fold_indices(d, folds, seed)
    ]


# the folds of the data sets of this process: a trial reuses them rather than preprocessing
# its data again (the data set is kept with them, so that its id is not reused)
_SPLITS: dict[tuple[int, int | None, int], tuple[Dataset, list[Dataset]]] = {}


def splits_of(d: Dataset, folds: int | None, seed: int) -> list[Dataset]:
    """The splits a configuration is trained on: the folds, or the study's one split."""
    if not folds:
        return [d]
    key = (id(d), folds, seed)
    if key not in _SPLITS:
        if len(_SPLITS) >= 4:
            _SPLITS.pop(next(iter(_SPLITS)))
        _SPLITS[key] = (d, fold_splits(d, folds, seed))
    return _SPLITS[key][1]


def refit_split(d: Dataset) -> Dataset:
    """The data of a delivered model: every non-test row to train on (nothing held out), the
    preprocessing fitted on those rows, and the test split."""
    if d.table is None:
        X, y = pooled(d)
        return replace(d, X_train=X, y_train=y, X_val=X[:0], y_val=y[:0])
    rows = np.concatenate([d.table.train, d.table.val])
    return split_on(d, rows, rows[:0])


def mean_of(rows: list[dict[str, float]]) -> dict[str, float]:
    """Key by key, the mean of per-fold metrics (every row has the same keys)."""
    return {k: float(np.mean([row[k] for row in rows])) for k in rows[0]}
