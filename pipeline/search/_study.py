"""The Optuna side of a sweep: storage, sampler, pruner, the search space, the trial budget,
baselines, and recovery of trials left behind by a sweep that died.

Trials are reserved under a lock (:func:`reserve_trial`) so that several worker processes never
start more than the sweep's total between them, and so that a re-run resumes rather than adds.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import math
import os
import socket
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, GrpcStorageProxy
from optuna.trial import FrozenTrial, Trial, TrialState

from pipeline.config import (
    MLP_DEFAULTS,
    SweepConfig,
    feasible,
    grpc_address,
    grpc_channel,
    in_sweep_terms,
    mask_credentials,
    open_journal,
    repair,
    suggest_space,
)
from pipeline.names import (
    BASELINE,
    CHAPTER,
    CHAPTER_KEEP_PROB,
    COMPLETE,
    FAIL_REASON,
    FAILED,
    INTERRUPTED_ATTR,
    INTERRUPTED_REASON,
    OVERRIDES,
    PRUNED,
    REGULARISERS_OFF,
    RETRY_OF,
    RUNNING,
    WAITING,
)
from pipeline.results import value_of

DEFAULT_STORAGE = Path("mlruns") / "optuna.journal"


def storage_url(cfg: SweepConfig, override: str | None = None) -> str:
    """The study storage: an Optuna URL (``sqlite:///...``, ``postgresql://...``) or the path
    of a journal file; by default ``mlruns/optuna.journal``."""
    return override or cfg.study.storage or str(DEFAULT_STORAGE)


def models_dir(url: str, study: str) -> Path:
    """Where workers keep each complete trial's network: beside a journal file, else in
    ``mlruns/models``; one folder per study."""
    root = Path(url).parent if "://" not in url else DEFAULT_STORAGE.parent
    return root / "models" / study


def model_path(models_dir: str | Path, trial_number: int) -> Path:
    """Where a worker saves the network of a complete trial."""
    return Path(models_dir) / f"trial-{trial_number:04d}.npz"


def make_storage(url: str) -> str | BaseStorage:
    """The storage of ``url``: a journal file's path, ``grpc://host:port`` (Optuna's storage
    proxy, as ``python -m pipeline head`` serves it), or an RDB URL."""
    if url.startswith("grpc://"):
        return _grpc_proxy(*grpc_address(url))
    if "://" in url:
        return url  # an RDB URL; Optuna builds the storage
    return open_journal(url)


def repair_storage(url: str) -> str | None:
    """A journal's torn records moved aside before the study is opened (one line saying so),
    or None; other storages need nothing."""
    return None if "://" in url else repair(Path(url))


# Every call to the storage proxy waits for it while it restarts (a call made while it is down
# waits for the connection instead of failing at once), and a call that fails inside it (its
# database restarting) is made again after 1, 2, 4 and 8 s: at most PROXY_PATIENCE seconds,
# after which the error reaches the trial, which fails with it as its reason.
PROXY_PATIENCE = 60
_PROXY_CALLS = {
    "methodConfig": [
        {
            "name": [{"service": "optuna.StorageService"}],
            "waitForReady": True,
            "timeout": f"{PROXY_PATIENCE}s",
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "1s",
                "maxBackoff": "8s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE", "UNKNOWN"],
            },
        }
    ]
}


class _PatientProxy(GrpcStorageProxy):
    """Optuna's client of the storage proxy, over a channel that rides out a restart."""

    def _setup(self) -> None:
        import json

        from optuna.storages._grpc.auto_generated import api_pb2_grpc
        from optuna.storages._grpc.client import GrpcClientCache

        options = [
            ("grpc.max_receive_message_length", -1),  # as Optuna's own channel
            ("grpc.enable_retries", 1),
            ("grpc.service_config", json.dumps(_PROXY_CALLS)),
            ("grpc.initial_reconnect_backoff_ms", 500),  # back within a second of the proxy
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        self._channel = grpc_channel(f"{self._host}:{self._port}", options)
        self._stub = api_pb2_grpc.StorageServiceStub(self._channel)
        self._cache = GrpcClientCache(self._stub)


@functools.cache
def _grpc_proxy(host: str, port: int) -> GrpcStorageProxy:
    """One client of the proxy at ``host:port`` per process: its connection and its cache of
    the finished trials (which never change) serve every study opened after the first, so that
    a cluster worker's next trial reads only what changed."""
    with warnings.catch_warnings():  # "experimental": the proxy is new in Optuna 4.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _PatientProxy(host=host, port=port)


def suggest(trial: Trial, cfg: SweepConfig) -> dict[str, Any]:
    """The trial's values of the searched hyperparameters (sweep-file names and values).

    A baseline's overrides are used as they are, without asking the sampler.
    """
    return suggest_space(trial, cfg.search, trial.user_attrs.get(OVERRIDES, {}))


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial on the (first) objective, one that keeps the constraints when
    any does, or None before any completed. Of equals, the first (as Optuna's own)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return min(complete, key=lambda t: (not feasible(t), sign * value_of(t)))


def load_study(cfg: SweepConfig, url: str, worker: int = 0) -> optuna.Study:
    return optuna.load_study(
        study_name=cfg.study.name,
        storage=make_storage(url),
        sampler=cfg.sampler_for(worker),
        pruner=cfg.make_pruner(),
    )


def create_study(cfg: SweepConfig, url: str) -> optuna.Study:
    """Create the study, or load it when it exists (a re-run resumes it). Its objectives are
    named (``final_val_loss``, ``nonzero_weights``), as Optuna's own tools then show them."""
    study = optuna.create_study(
        study_name=cfg.study.name,
        storage=make_storage(url),
        sampler=cfg.sampler_for(0),
        pruner=cfg.make_pruner(),
        directions=cfg.directions,
        load_if_exists=True,
    )
    names = cfg.objective_keys
    if study.metric_names != names:
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
    return study


def objectives_problem(cfg: SweepConfig, url: str) -> str | None:
    """Why the study in ``url`` cannot be resumed by this sweep: it exists with other
    objectives (its trials' values would not be this sweep's). Read before anything is
    written; a journal not yet created holds no study."""
    if "://" not in url and not Path(url).exists():
        return None
    try:
        study = optuna.load_study(study_name=cfg.study.name, storage=make_storage(url))
    except KeyError:  # no such study yet
        return None
    names = study.metric_names or [f"final_{cfg.study.metric}"] * len(study.directions)
    directions = [d.name.lower() for d in study.directions]
    if (names, directions) == (cfg.objective_keys, cfg.directions):
        return None
    had = ", ".join(f"{n} ({d})" for n, d in zip(names, directions, strict=False))
    wants = ", ".join(f"{n} ({d})" for n, d in zip(cfg.objective_keys, cfg.directions, strict=True))
    return (
        f"study.name = {cfg.study.name!r}: the study exists in {mask_credentials(url)} with "
        f"objectives {had}; this sweep's are {wants}: give it another study.name"
    )


def counts_toward_budget(t: FrozenTrial) -> bool:
    """Every trial started counts, except one interrupted by a dead or stopped sweep: its
    parameters are run again by a retry, which counts in its place. Queued (WAITING) trials
    count once a worker takes them."""
    if t.state == TrialState.WAITING:
        return False
    return not (t.state == TrialState.FAIL and t.user_attrs.get(INTERRUPTED_ATTR))


def budget_used(study: optuna.Study) -> int:
    return sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))


STATE_NAMES = {
    TrialState.COMPLETE: COMPLETE,
    TrialState.PRUNED: PRUNED,
    TrialState.FAIL: FAILED,
    TrialState.RUNNING: RUNNING,
    TrialState.WAITING: WAITING,
}


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials by state, counting those of the budget and the queued ones (not the
    interrupted trials, whose retries count in their place)."""
    counts = dict.fromkeys(STATE_NAMES.values(), 0)
    for t in trials:
        if counts_toward_budget(t) or t.state == TrialState.WAITING:
            counts[STATE_NAMES[t.state]] += 1
    return counts


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
    """Baseline configurations, by name: their values override both fixed and searched ones.
    The unregularised network sets every regulariser the sweep fixes or searches to "off"; on
    ``sine`` the chapter's own two configurations follow. A searched key of the training that a
    baseline does not set (``lr``, ``width``, ...) takes a value of its own (:func:`centre`),
    not the sampler's: drawn at random, it made "no regularisation" a matter of luck."""
    regularisers = set(cfg.search) | set(cfg.fixed)
    result = {"unregularised": {k: v for k, v in REGULARISERS_OFF.items() if k in regularisers}}
    if cfg.data.name == "sine":
        chapter = in_sweep_terms(cfg, CHAPTER)
        result["chapter"] = chapter
        result[f"chapter-dropout-{CHAPTER_KEEP_PROB}"] = {**chapter, "keep_prob": CHAPTER_KEEP_PROB}
    training = {k: centre(p, MLP_DEFAULTS.get(k)) for k, p in cfg.search.items()}
    return {name: training | values for name, values in result.items()}


def centre(p: Any, default: Any) -> Any:
    """A searched key's value for a baseline: the network's default where the range holds it
    (the chapter's learning rate, 0.01), else the middle of the range (geometric on a log
    scale, on the step's grid), or a categorical's first choice."""
    if _in_space(p, default):
        return default
    if p.type == "categorical":
        return p.choices[0]
    middle = math.sqrt(p.low * p.high) if p.log else (p.low + p.high) / 2
    if p.step:
        middle = p.low + round((middle - p.low) / p.step) * p.step
    return int(round(middle)) if p.type == "int" else float(middle)


def fail_trial(study: optuna.Study, url: str, number: int, reason: str, interrupted: bool) -> None:
    """Mark a RUNNING trial failed with its reason, through Optuna's storage API (the worker
    that ran it is gone); an interrupted one is also flagged, so that it is run again."""
    storage = optuna.storages.get_storage(make_storage(url))
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), number
    )
    if interrupted:
        storage.set_trial_user_attr(trial_id, INTERRUPTED_ATTR, True)
    storage.set_trial_user_attr(trial_id, FAIL_REASON, reason)
    storage.set_trial_state_values(trial_id, TrialState.FAIL)


def recover_interrupted(study: optuna.Study, url: str) -> list[int]:
    """Mark trials left RUNNING by a dead sweep as failed (interrupted), and queue their
    parameters again once. Call only while no worker of this study is running."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF) for t in trials}
    marked = []
    for t in trials:
        if t.state == TrialState.RUNNING:
            fail_trial(study, url, t.number, INTERRUPTED_REASON, interrupted=True)
            marked.append(t.number)
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(INTERRUPTED_ATTR) and t.number not in retried:
            attrs = {k: v for k, v in t.user_attrs.items() if k in (BASELINE, OVERRIDES)}
            study.enqueue_trial(
                t.params, user_attrs={**attrs, RETRY_OF: t.number}, skip_if_exists=False
            )
    return marked


@contextlib.contextmanager
def hold_study(url: str, name: str) -> Iterator[None]:
    """Held by the one sweep that runs study ``name``: a second sweep of the same study (which
    would take the first's running trials for leftovers of a dead sweep) is refused. An flock,
    released by the OS when its holder dies, so a killed sweep never leaves it taken. Its file
    lives in the temporary folder, keyed by storage and study, so that a sweep refused for any
    reason has written nothing where the user looks."""
    where = url if "://" in url else str(Path(url).resolve())
    key = hashlib.sha256(f"{where}\n{name}".encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"pipeline-study-{key}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise StudyBusyError(
                f"study {name!r} is being run by {holder}: wait for it to end, or stop it "
                "(Ctrl-C) and re-run to resume"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on host {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


class StudyBusyError(RuntimeError):
    """Another sweep is running the study."""
