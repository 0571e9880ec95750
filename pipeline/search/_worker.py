"""A sweep worker: runs in its own process (joblib/loky), takes trials from the shared study until
the budget, the deadline or a stop request ends it, and logs each to MLflow.

Order within a trial: the MLflow child run is finished before Optuna is told, so a worker that
dies in between leaves a RUNNING trial, which the next run marks failed and retries.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState
from threadpoolctl import threadpool_limits

from pipeline.config import SweepConfig
from pipeline.core import Dataset, load
from pipeline.names import (
    COMPLETE,
    FAIL_REASON,
    FAILED,
    INTERRUPTED,
    INTERRUPTED_ATTR,
    MLFLOW_RUN_ID,
    MLFLOW_RUN_URL,
    PRUNED,
)
from pipeline.quiet import quiet_libraries
from pipeline.results import WorkerReport
from pipeline.search._objective import run_trial
from pipeline.search._study import load_study, model_path, reserve_trial

if TYPE_CHECKING:
    from pipeline.tracking import TrialLogger


@dataclass(frozen=True)
class WorkerContext:
    """What a worker needs besides the sweep config; plain data, so it pickles."""

    storage: str
    deadline: float | None  # time.time() after which no trial starts
    stop_file: str  # exists once the sweep is asked to stop
    models_dir: str  # each complete trial's network is saved here, for the test evaluation
    tracking_uri: str | None = None  # None: tracking off
    experiment_id: str | None = None
    parent_run_id: str | None = None
    # MLflow's standard source tags (mlflow.source.*, mlflow.user), resolved by the sweep's
    # own process: a worker's would name joblib's entry point
    source_tags: dict[str, str] = field(default_factory=dict)


def warm_up(cfg: SweepConfig, data: bool = True) -> None:
    """What every worker does before its first trial and that needs no store: the imports
    (MLflow's alone is over a second) and the data set's (``data``; a cluster's workers are
    sent the sweep's instead). The sweep runs this in its worker processes while it prepares
    the stores, so that the workers' phase starts warm; those processes (``data``: not a
    cluster's) then end when the sweep is gone."""
    quiet_libraries()  # a fresh process: the command's settings are not inherited
    if data:
        _exit_when_orphaned()
    if data:
        load(cfg.data.name, seed=cfg.data.seed, **cfg.data.options)
    if cfg.tracking.enabled:
        import pipeline.tracking  # noqa: F401 - imported for its cost, ahead of the trials


_taking_trials = threading.Event()  # set while this process runs run_worker's loop
_watching = threading.Event()


def _exit_when_orphaned(period: float = 1.0) -> None:
    """Once the sweep that started this worker process is gone (kill -9), end the process
    when it runs no trial loop (which ends its trial as interrupted first, then exits): loky
    leaves idle workers alive for minutes, holding the dead sweep's output open."""
    if _watching.is_set() or threading.current_thread() is not threading.main_thread():
        return
    _watching.set()
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent or _taking_trials.is_set():
            time.sleep(period)
        os._exit(0)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def run_worker(cfg: SweepConfig, worker: int, ctx: WorkerContext) -> WorkerReport:
    quiet_libraries()
    started = time.perf_counter()
    in_child = threading.current_thread() is threading.main_thread()
    if in_child:
        # Ctrl-C reaches every process of the terminal, and a scheduler's SIGTERM every
        # process of the job; the parent asks workers to stop through ctx.stop_file instead,
        # so that each ends its trial cleanly (loky itself ends its workers with SIGKILL).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    warnings.filterwarnings("ignore", category=UserWarning, module="optuna")
    report = WorkerReport(worker)
    parent = os.getppid()
    _taking_trials.set()
    try:
        with threadpool_limits(limits=1, user_api="blas"):  # one BLAS thread per process
            _take_trials(cfg, worker, ctx, report, in_child, parent)
    except Exception as err:
        # An error of the machinery (not of a trial's training, which fails that trial):
        # report it once, and ask the other workers to end their trials and stop.
        report.error = f"worker {worker}: {type(err).__name__}: {err}"
        Path(ctx.stop_file).touch()
    finally:
        _taking_trials.clear()
    report.busy_seconds = time.perf_counter() - started
    if in_child and os.getppid() != parent:
        os._exit(0)  # orphaned: nobody will collect the report, and loky would idle on
    return report


def _take_trials(
    cfg: SweepConfig,
    worker: int,
    ctx: WorkerContext,
    report: WorkerReport,
    in_child: bool,
    parent: int,
) -> None:
    """The worker's loop: reserve a trial, run it, log it, tell Optuna; until the budget, the
    deadline or a stop request ends it."""
    study = load_study(cfg, ctx.storage, worker)
    dataset = load(cfg.data.name, seed=cfg.data.seed, **cfg.data.options)
    logger = trial_logger(cfg, ctx)
    Path(ctx.models_dir).mkdir(parents=True, exist_ok=True)
    stop_file = Path(ctx.stop_file)

    def stop_requested() -> bool:
        # asked to stop (Ctrl-C), or orphaned: a parent killed with -9 must not leave its
        # workers running the sweep on their own (getppid changes once it is gone)
        return stop_file.exists() or (in_child and os.getppid() != parent)

    while not stop_requested() and (ctx.deadline is None or time.time() < ctx.deadline):
        trial = reserve_trial(study, ctx.storage, cfg.study.n_trials)
        if trial is None:
            break
        run_one(trial, cfg, dataset, logger, ctx.models_dir, report, stop_requested)


def trial_logger(cfg: SweepConfig, ctx: WorkerContext) -> TrialLogger | None:
    """The MLflow logger of a worker's (or a cluster task's) trials; None with tracking off."""
    if ctx.tracking_uri is None or ctx.experiment_id is None or ctx.parent_run_id is None:
        return None
    from pipeline.tracking import TrialLogger

    return TrialLogger(
        ctx.tracking_uri,
        ctx.experiment_id,
        ctx.parent_run_id,
        cfg.study.name,
        cfg.tracking.curve_points,
        tuple(cfg.search),
        ctx.source_tags,
    )


def run_one(
    trial: optuna.Trial,
    cfg: SweepConfig,
    dataset: Dataset,
    logger: TrialLogger | None,
    models_dir: str,
    report: WorkerReport,
    stop_requested: Callable[[], bool],
) -> None:
    """One reserved trial: its MLflow run started, the network trained, the model saved in
    ``models_dir``, the run finished, then Optuna told (see the module's docstring)."""
    report.current_trial = trial.number
    tic = time.perf_counter()
    run_id = logger.start(trial.number, trial.user_attrs) if logger else None
    if logger and run_id is not None:  # Optuna's tools (dashboard, dataframe) point to the run
        from pipeline.tracking import run_link  # loaded with the logger already

        trial.set_user_attr(MLFLOW_RUN_ID, run_id)
        trial.set_user_attr(MLFLOW_RUN_URL, run_link(logger.uri, logger.experiment_id, run_id))
    report.tracking_seconds += time.perf_counter() - tic
    result = run_trial(trial, cfg, dataset, stop_requested)
    if result.state == COMPLETE and not all(map(math.isfinite, result.values or [math.nan])):
        result.state, result.reason = FAILED, f"objective is {result.values}"
    report.trials += 1
    report.compute_seconds += result.metrics.get("train_time", 0.0)
    if result.state == COMPLETE and result.model is not None:
        result.model_path = model_path(models_dir, trial.number)
        result.model.save(result.model_path)
    if result.reason:
        trial.set_user_attr(FAIL_REASON, result.reason)
    if result.state == INTERRUPTED:
        trial.set_user_attr(INTERRUPTED_ATTR, True)
    for constraint, value in zip(cfg.constraints, result.constraints, strict=False):
        trial.set_constraint(str(constraint), value)  # <= 0 where kept; the sampler reads it
    if logger and run_id is not None:
        tic = time.perf_counter()
        try:
            logger.finish(run_id, result)
        except Exception as err:  # tracking trouble must not lose the trial
            warnings.warn(f"trial {trial.number}: MLflow logging failed: {err}", stacklevel=1)
        report.tracking_seconds += time.perf_counter() - tic
    state = {COMPLETE: TrialState.COMPLETE, PRUNED: TrialState.PRUNED}.get(
        result.state, TrialState.FAIL
    )
    trial.study.tell(trial, result.values if state == TrialState.COMPLETE else None, state=state)
    report.current_trial = None
