"""``sweep --cluster tcp://HOST:8786``: the trials as tasks on the workers of a Dask cluster.

The sweep command reserves every trial itself (so the budget stays exact without a shared lock)
and submits each as a task; the task, on whichever machine Dask picks, trains the trial, logs
it to the MLflow server and tells the study through the shared storage, as a local worker
does. Nothing a task needs comes from the sweep's filesystem: the sweep file travels with the
task, the built-in data sets are made on the worker, the model goes to MLflow as an artifact.

- A worker that dies mid-trial: Dask runs its task again elsewhere (up to the scheduler's
  ``allowed-failures``); the retry runs the same trial, with the same parameters, and ends the
  dead attempt's MLflow run first.
- Ctrl-C: a Dask ``Event`` of the study is set; running tasks notice it where a local worker
  checks its stop file (every ``report_every`` epochs) and end their trial as interrupted.
"""

from __future__ import annotations

import functools
import tempfile
import time
from typing import Any

import optuna
from threadpoolctl import threadpool_limits

from pipeline.config import ConfigError, SweepConfig
from pipeline.data import Dataset, load
from pipeline.locations import first_line, mask_credentials, scheme_of
from pipeline.results import WorkerReport
from pipeline.study import fail_trial, reserve_trial
from pipeline.worker import WorkerContext, run_one, trial_logger

CONNECT_TIMEOUT = 5.0  # seconds for the scheduler to answer
SHARED_STORAGE = ("grpc", "postgresql", "mysql")
SHARED_TRACKING = ("http", "https", "postgresql", "mysql")


def check_shared(cfg: SweepConfig, storage: str, tracking: str | None) -> None:
    """Every machine must reach the study and the tracking store: no local file will do."""
    if scheme_of(storage) not in SHARED_STORAGE:
        raise ConfigError(
            cfg.source,
            [
                f"storage = {mask_credentials(storage)!r}: with --cluster every machine opens the "
                "study; allowed: grpc://HOST:PORT (make head) or postgresql://..."
            ],
        )
    if tracking is not None and scheme_of(tracking) not in SHARED_TRACKING:
        raise ConfigError(
            cfg.source,
            [
                f"tracking uri = {mask_credentials(tracking)!r}: with --cluster every machine "
                "logs to it; allowed: http://HOST:PORT (make head), or --no-tracking"
            ],
        )


def connect(cfg: SweepConfig, address: str) -> Any:
    """A client of the scheduler at ``address``, or one clear line within seconds."""
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise ConfigError(
            cfg.source,
            [f"cluster = {address!r}: no Dask scheduler answers ({first_line(err)})"],
        ) from None


def stop_event(client: Any, study: str) -> Any:
    """The study's stop request, shared by the sweep and its tasks; cleared on creation."""
    from distributed import Event

    event = Event(f"pipeline-stop-{study}", client=client)
    event.clear()
    return event


def run_trials(
    client: Any, cfg: SweepConfig, ctx: WorkerContext, study: optuna.Study, stop: Any
) -> list[WorkerReport]:
    """Reserve trials and keep every worker thread of the cluster busy with one, until the
    budget, the deadline or the stop request; returns one report per trial run."""
    from distributed import wait
    from distributed.scheduler import KilledWorker

    reports: list[WorkerReport] = []
    running: dict[Any, int] = {}  # future -> trial number
    while True:
        slots = max(1, sum(client.nthreads().values()))
        while (
            len(running) < slots
            and not stop.is_set()
            and (ctx.deadline is None or time.time() < ctx.deadline)
        ):
            trial = reserve_trial(study, ctx.storage, cfg.study.n_trials)
            if trial is None:
                break
            future = client.submit(cluster_trial, cfg, ctx, trial._trial_id, stop.name, pure=False)
            running[future] = trial.number
        if not running:
            return reports
        with client.as_current():  # wait() asks for the current client
            done, _ = wait(list(running), return_when="FIRST_COMPLETED")
        for future in done:
            number = running.pop(future)
            try:
                reports.append(future.result())
            except KilledWorker as err:  # its workers kept dying: the trial fails, go on
                reason = f"its worker died {first_line(err)}"
                fail_trial(study, ctx.storage, number, reason, False)


def cluster_trial(cfg: SweepConfig, ctx: WorkerContext, trial_id: int, stop: str) -> WorkerReport:
    """One trial on a Dask worker (see the module's docstring)."""
    from distributed import Event

    from pipeline.study import load_study

    report = WorkerReport(worker=0)
    started = time.perf_counter()
    try:
        with threadpool_limits(limits=1, user_api="blas"):  # one BLAS thread per task
            study = load_study(cfg, ctx.storage)
            trial = optuna.Trial(study, trial_id)
            report.current_trial = trial.number  # failed with the error if one comes now
            logger = trial_logger(cfg, ctx)
            if logger is not None:  # a retry after its worker died: the dead run ends first
                from pipeline.tracking import close_interrupted_runs

                close_interrupted_runs(logger.client, ctx.experiment_id, trial.number)
            with tempfile.TemporaryDirectory() as models:
                run_one(trial, cfg, _dataset(cfg), logger, models, report, Event(stop).is_set)
    except Exception as err:  # of the machinery, not of training: said once by the sweep
        report.error = f"trial task: {type(err).__name__}: {err}"
    report.busy_seconds = time.perf_counter() - started
    return report


@functools.cache
def _dataset_of(name: str, seed: int, options: str) -> Dataset:
    import json

    return load(name, seed=seed, **json.loads(options))


def _dataset(cfg: SweepConfig) -> Dataset:
    """The sweep's data set, made (or read) once per worker process."""
    import json

    return _dataset_of(cfg.data.name, cfg.data.seed, json.dumps(cfg.data.options, sort_keys=True))
