"""The model a user takes away, and its test figure.

With ``[study] deliver = "refit"`` (the default) the chosen configuration is trained once more
on all the data that is not test data (training + validation, pooled), for the number of epochs
its own networks ran (with early stopping: where they stopped improving, their mean over the
re-runs or folds; without: ``max_epochs``), from the study's seed; it is then evaluated on the
test split, once. That network is the one logged as the study's MLflow model, and its test
figure is reported first; the re-runs' mean and spread stay as the configuration's uncertainty.

With ``deliver = "ensemble"`` that refit is made once from each re-run seed and the networks'
outputs are averaged (:class:`pipeline.core.Ensemble`): the variance a single network owes to
its seed is averaged away, and the networks measured by the re-runs are the ones it averages
over, in kind.

With ``deliver = "trial"`` it is the chosen trial's own network (trained on the training split,
its first fold with cross-validation), for studies whose validation data are a device of the
study rather than data a user has (the chapter's sine task: 100 training points, 5000
validation points).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from joblib import Parallel, delayed

from pipeline.config import SweepConfig, trial_values
from pipeline.core import MLP, Dataset, Ensemble, refit_split, splits_of
from pipeline.names import OVERRIDES

REFIT, ENSEMBLE, TRIAL = "refit", "ensemble", "trial"
HOW = {
    REFIT: "refitted on training + validation",
    ENSEMBLE: "refitted on training + validation once per re-run seed, averaged",
    TRIAL: "the chosen trial's own network",
}


def epochs_of(model: MLP) -> int:
    """The epochs that made ``model`` what it is: its best epoch when early stopping
    restored it, else every epoch it ran (``max_epochs`` for a network saved without them)."""
    best = getattr(model, "best_epoch_", None)
    if model.patience and best is not None:
        return int(best)
    return int(getattr(model, "stopped_epoch_", None) or model.max_epochs)


def refit(cfg: SweepConfig, trial: Any, d: Dataset, epochs: int, seed: int | None = None) -> MLP:
    """The chosen configuration trained on training + validation for ``epochs`` epochs (no
    early stopping: nothing is held out), from ``seed`` (by default the study's); ``d`` is
    :func:`pipeline.core.refit_split`'s, preprocessed on those rows."""
    from threadpoolctl import threadpool_limits

    from pipeline.search._objective import build_model

    values = trial_values(cfg, trial.params, trial.user_attrs.get(OVERRIDES))
    values |= {"patience": None, "max_epochs": max(int(epochs), 1)}
    if seed is not None:
        values["seed"] = seed
    with threadpool_limits(limits=1, user_api="blas"):
        return build_model(values, d.task).fit(d.X_train, d.y_train)


def deliver(
    cfg: SweepConfig,
    trial: Any,
    d: Dataset,
    own: MLP,
    epochs: list[float],
    seeds: list[int] | None = None,
) -> dict[str, Any]:
    """The delivered network (``model``) of the chosen ``trial`` with its ``preprocessing``,
    how it was made, its epochs and its ``test_*`` metrics, evaluated once; ``own`` is the
    trial's own network,
    ``epochs`` those of the chosen configuration's networks (re-runs or folds) and ``seeds``
    the re-runs' (an ensemble's members)."""
    model: MLP | Ensemble
    if cfg.study.deliver == TRIAL:  # with the preprocessing of the split it trained on
        model, n = own, epochs_of(own)
        d = splits_of(d, cfg.study.folds, cfg.study.seed)[0]
    else:
        d = refit_split(d)
        finite = [e for e in epochs if math.isfinite(e)]
        n = round(float(np.mean(finite))) if finite else epochs_of(own)
        if cfg.study.deliver == ENSEMBLE and seeds:
            # on the warm workers, as the re-runs (joblib's default backend: local processes,
            # or the cluster's within _dask.end_on)
            jobs = min(cfg.study.n_jobs, len(seeds))
            members = Parallel(n_jobs=jobs)(delayed(refit)(cfg, trial, d, n, s) for s in seeds)
            model = Ensemble(members)
        else:
            model = refit(cfg, trial, d, n)
    tested = model.evaluate(d.X_test, d.y_test)
    return {
        "trial": trial.number,
        "how": cfg.study.deliver,
        "epochs": n,
        **{f"test_{k}": v for k, v in tested.items()},
        "model": model,
        "preprocessing": d.preprocessing,
    }
