"""Optuna samplers and pruners by name, from a sweep file's options. Kept apart from the sweep
configuration so that the configuration can try them while it validates a file."""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any, Literal, get_args

import optuna

SamplerName = Literal["tpe", "gp", "random", "cmaes", "qmc", "grid"]
PrunerName = Literal["median", "hyperband", "wilcoxon", "none"]
SAMPLERS: tuple[str, ...] = get_args(SamplerName)
PRUNERS: tuple[str, ...] = get_args(PrunerName)


def make_sampler(
    name: str, options: dict[str, Any], seed: int, grid: dict[str, list[Any]] | None = None
) -> optuna.samplers.BaseSampler:
    """A sampler; ``grid`` is the search space of the grid sampler."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **options)
    if name == "gp":  # a Gaussian process: for budgets of a few dozen trials; needs PyTorch
        if importlib.util.find_spec("torch") is None:
            raise ValueError(
                "the gp sampler needs PyTorch, which is not installed: "
                "pip install 'regsweep[gp]' (or choose tpe, random, cmaes, qmc or grid)"
            )
        return optuna.samplers.GPSampler(seed=seed, **options)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed, **options)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, **options)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, **options)
    if name == "grid":
        return optuna.samplers.GridSampler(grid or {}, seed=seed, **options)
    raise ValueError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")


def make_pruner(
    name: str, options: dict[str, Any], max_resource: int, per_fold: bool = False
) -> optuna.pruners.BasePruner:
    """A pruner whose resource is the epoch, up to ``max_resource``; with cross-validation
    (``per_fold``) it is the fold, up to the number of folds, and a trial may be pruned after
    its first fold."""
    if name == "median":
        return optuna.pruners.MedianPruner(
            **{"n_startup_trials": 5, "n_warmup_steps": 0 if per_fold else 20, **options}
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            **{"min_resource": 1 if per_fold else 10, "max_resource": max_resource, **options}
        )
    if name == "wilcoxon":  # made for per-fold scores: each fold's own, paired with the best's
        if not per_fold:
            raise ValueError(
                "the wilcoxon pruner compares a trial's folds with the best trial's: it needs "
                "study.folds (without folds: median, hyperband or none)"
            )
        with warnings.catch_warnings():  # "experimental" since Optuna 3.6
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.pruners.WilcoxonPruner(**options)
    if name == "none":
        if options:
            raise ValueError("the 'none' pruner takes no options")
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; known: {', '.join(PRUNERS)}")
