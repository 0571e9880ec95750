"""Optuna samplers and pruners by name, from a sweep file's options. Kept apart from the sweep
configuration so that the configuration can try them while it validates a file."""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any, Literal, get_args

import optuna

from pipeline.names import BASELINE

SamplerName = Literal["tpe", "gp", "random", "cmaes", "qmc", "grid", "nsga2", "nsga3"]
PrunerName = Literal["median", "hyperband", "wilcoxon", "none"]
SAMPLERS: tuple[str, ...] = get_args(SamplerName)
PRUNERS: tuple[str, ...] = get_args(PrunerName)


class _SearchTrials:
    """A study as a sampler that models the trials jointly sees it: the trials of the search,
    without the baselines. A baseline's values outside the search space (weight_decay 0 on a
    log scale) are its overrides, not params; seen, they take those keys out of the search
    space every trial shares, and GP and CMA-ES would sample them at random ever after."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def _get_trials(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [
            t for t in self._study._get_trials(*args, **kwargs) if not t.user_attrs.get(BASELINE)
        ]

    def get_trials(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [
            t for t in self._study.get_trials(*args, **kwargs) if not t.user_attrs.get(BASELINE)
        ]

    def __getattr__(self, name: str) -> Any:  # everything else is the study's own
        return getattr(self._study, name)


class _SearchOnly:
    """A relative sampler (GP, CMA-ES) that models the search's trials only."""

    def infer_relative_search_space(self, study: optuna.Study, trial: Any) -> Any:
        return super().infer_relative_search_space(_SearchTrials(study), trial)  # type: ignore[misc]

    def sample_relative(self, study: optuna.Study, trial: Any, search_space: Any) -> Any:
        return super().sample_relative(_SearchTrials(study), trial, search_space)  # type: ignore[misc]


class _SearchOnlyGP(_SearchOnly, optuna.samplers.GPSampler):
    pass


class _SearchOnlyCmaEs(_SearchOnly, optuna.samplers.CmaEsSampler):
    pass


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
        return _SearchOnlyGP(seed=seed, **options)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed, **options)
    if name == "cmaes":
        return _SearchOnlyCmaEs(seed=seed, **options)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, **options)
    if name == "grid":
        return optuna.samplers.GridSampler(grid or {}, seed=seed, **options)
    if name == "nsga2":  # genetic, for several objectives (study.objectives)
        return optuna.samplers.NSGAIISampler(seed=seed, **options)
    if name == "nsga3":  # NSGA-II's successor for three objectives or more
        return optuna.samplers.NSGAIIISampler(seed=seed, **options)
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
