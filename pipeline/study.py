"""The Optuna side of a sweep: storage, sampler, pruner, the search space, the trial budget,
baselines, and recovery of trials left behind by a sweep that died.

Trials are reserved under a lock (:func:`reserve_trial`) so that several worker processes never
start more than the sweep's total between them, and so that a re-run resumes rather than adds.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, Trial, TrialState

from pipeline.config import SweepConfig

DEFAULT_STORAGE = Path("mlruns") / "optuna.journal"

# User attributes we keep on trials (names shared with tracking and analysis).
BASELINE = "baseline"  # name of the baseline a trial runs, e.g. "unregularised"
OVERRIDES = "overrides"  # hyperparameters a baseline sets that are not (or cannot be) params
INTERRUPTED = "interrupted"  # the trial was cut short by Ctrl-C or a dead process
RETRY_OF = "retry_of"  # number of the interrupted trial whose parameters this one re-runs
FAIL_REASON = "fail_reason"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def storage_url(cfg: SweepConfig, override: str | None = None) -> str:
    """The study storage: an Optuna URL (``sqlite:///...``, ``postgresql://...``) or the path
    of a journal file; by default ``mlruns/optuna.journal``."""
    return override or cfg.study.storage or str(DEFAULT_STORAGE)


def models_dir(url: str, study: str) -> Path:
    """Where workers keep each complete trial's network: beside a journal file, else in
    ``mlruns/models``; one folder per study."""
    root = Path(url).parent if "://" not in url else DEFAULT_STORAGE.parent
    return root / "models" / study


def make_storage(url: str) -> str | BaseStorage:
    if "://" in url:
        return url  # an RDB URL; Optuna builds the storage
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def make_sampler(cfg: SweepConfig, worker: int) -> optuna.samplers.BaseSampler:
    """The sweep's sampler; each worker gets its own seed (one seed everywhere would make every
    worker suggest the same parameters)."""
    seed = cfg.sampler_seed + worker
    options = cfg.sampler.options
    name = cfg.sampler.name
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **options)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed, **options)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, **options)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, **options)
    return optuna.samplers.GridSampler(grid_space(cfg), seed=seed, **options)


def make_pruner(cfg: SweepConfig) -> optuna.pruners.BasePruner:
    options = cfg.pruner.options
    if cfg.pruner.name == "median":
        return optuna.pruners.MedianPruner(
            **{"n_startup_trials": 5, "n_warmup_steps": 20, **options}
        )
    if cfg.pruner.name == "hyperband":
        max_epochs = cfg.fixed.get("max_epochs", 500)
        return optuna.pruners.HyperbandPruner(
            **{"min_resource": 10, "max_resource": max_epochs, **options}
        )
    if options:
        raise ValueError("the 'none' pruner takes no options")
    return optuna.pruners.NopPruner()


def grid_space(cfg: SweepConfig) -> dict[str, list[Any]]:
    space = {}
    for key, p in cfg.search.items():
        if p.type == "categorical":
            space[key] = list(p.choices)
        elif p.type == "int":
            space[key] = list(range(p.low, p.high + 1, p.step))
        else:
            n = int(math.floor((p.high - p.low) / p.step + 1e-9)) + 1
            space[key] = [float(v) for v in np.round(p.low + p.step * np.arange(n), 12)]
    return space


def suggest(trial: Trial, cfg: SweepConfig) -> dict[str, Any]:
    """The trial's values of the searched hyperparameters (sweep-file names and values).

    A baseline's overrides are used as they are, without asking the sampler.
    """
    overrides = trial.user_attrs.get(OVERRIDES, {})
    values = {}
    for key, p in cfg.search.items():
        if key in overrides:
            values[key] = overrides[key]
        elif p.type == "float":
            values[key] = trial.suggest_float(key, p.low, p.high, log=p.log, step=p.step)
        elif p.type == "int":
            values[key] = trial.suggest_int(key, p.low, p.high, step=p.step, log=p.log)
        else:
            values[key] = trial.suggest_categorical(key, p.choices)
    return values


def load_study(cfg: SweepConfig, url: str, worker: int = 0) -> optuna.Study:
    return optuna.load_study(
        study_name=cfg.study.name,
        storage=make_storage(url),
        sampler=make_sampler(cfg, worker),
        pruner=make_pruner(cfg),
    )


def create_study(cfg: SweepConfig, url: str) -> optuna.Study:
    """Create the study, or load it when it exists (a re-run resumes it)."""
    return optuna.create_study(
        study_name=cfg.study.name,
        storage=make_storage(url),
        sampler=make_sampler(cfg, 0),
        pruner=make_pruner(cfg),
        direction=cfg.direction,
        load_if_exists=True,
    )


def counts_toward_budget(t: FrozenTrial) -> bool:
    """Every trial started counts, except one interrupted by a dead or stopped sweep: its
    parameters are run again by a retry, which counts in its place. Queued (WAITING) trials
    count once a worker takes them."""
    if t.state == TrialState.WAITING:
        return False
    return not (t.state == TrialState.FAIL and t.user_attrs.get(INTERRUPTED))


def budget_used(study: optuna.Study) -> int:
    return sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))


@contextlib.contextmanager
def _locked(url: str) -> Iterator[None]:
    """A lock shared by every worker of this storage, held while a trial is reserved. flock is
    released by the OS when its holder dies, so a killed worker cannot leave it taken."""
    lock_path = Path(url + ".reserve" if "://" not in url else DEFAULT_STORAGE.parent / ".reserve")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def reserve_trial(study: optuna.Study, url: str, n_trials: int) -> Trial | None:
    """A new trial, or None once the study holds its ``n_trials``. Counting and asking happen
    under one lock, so two workers cannot both take the last place."""
    with _locked(url):
        if budget_used(study) >= n_trials:
            return None
        return study.ask()


def enqueue_baselines(study: optuna.Study, cfg: SweepConfig) -> list[str]:
    """Queue the baselines once per study: the unregularised network, and on ``sine`` the
    chapter's own two configurations. Values outside the search space (e.g. weight_decay 0 on
    a log scale) go to the trial's overrides instead of its params."""
    existing = {t.user_attrs.get(BASELINE) for t in study.get_trials(deepcopy=False)}
    queued = []
    for name, values in baselines(cfg).items():
        if name in existing:
            continue
        params, overrides = {}, {}
        for key, value in values.items():
            p = cfg.search.get(key)
            if p is not None and _in_space(p, value):
                params[key] = value
            else:
                overrides[key] = value
        study.enqueue_trial(params, user_attrs={BASELINE: name, OVERRIDES: overrides})
        queued.append(name)
    return queued


def _in_space(p: Any, value: Any) -> bool:
    if p.type == "categorical":
        return value in p.choices
    return value is not None and p.low <= value <= p.high and not isinstance(value, bool)


def baselines(cfg: SweepConfig) -> dict[str, dict[str, Any]]:
    """Baseline configurations, by name: their values override both fixed and searched ones."""
    off = {
        "keep_prob": 1.0,
        "input_keep_prob": 1.0,
        "weight_decay": 0.0,
        "l1": 0.0,
        "patience": 0,
        "max_norm": 0,
    }
    regularisers = set(cfg.search) | set(cfg.fixed)
    result = {"unregularised": {k: v for k, v in off.items() if k in regularisers}}
    if cfg.data.name == "sine":
        chapter = {
            **off,
            "hidden": [64, 64],
            "activation": "relu",
            "optimizer": "sgd",
            "lr": 0.01,
            "max_epochs": 500,
            "weight_decay": 0.001,
            "batch_size": 0,
            "seed": 42,
        }
        if set(cfg.search) & {"width", "depth"} or {"width", "depth"} & set(cfg.fixed):
            chapter = {k: v for k, v in chapter.items() if k != "hidden"} | {
                "width": 64,
                "depth": 2,
            }
        result["chapter"] = chapter
        result["chapter-dropout-0.7"] = {**chapter, "keep_prob": 0.7}
    return result


def recover_interrupted(study: optuna.Study, url: str) -> list[int]:
    """Mark trials left RUNNING by a dead sweep as failed (interrupted), and queue their
    parameters again once. Call only while no worker of this study is running."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF) for t in trials}
    storage = optuna.storages.get_storage(make_storage(url))
    study_id = storage.get_study_id_from_name(study.study_name)
    marked = []
    for t in trials:
        if t.state == TrialState.RUNNING:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            storage.set_trial_user_attr(trial_id, INTERRUPTED, True)
            storage.set_trial_user_attr(
                trial_id, FAIL_REASON, "interrupted: the sweep running it stopped before it ended"
            )
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
            marked.append(t.number)
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(INTERRUPTED) and t.number not in retried:
            attrs = {k: v for k, v in t.user_attrs.items() if k in (BASELINE, OVERRIDES)}
            study.enqueue_trial(
                t.params, user_attrs={**attrs, RETRY_OF: t.number}, skip_if_exists=False
            )
    return marked
