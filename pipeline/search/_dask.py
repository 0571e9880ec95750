"""``sweep --cluster tcp://HOST:8786``: the trials as tasks on the workers of a Dask cluster.

The sweep command reserves every trial itself (so the budget stays exact without a shared lock)
and submits each as a task; the task, on whichever machine Dask picks, trains the trial, logs
it to the MLflow server and tells the study through the shared storage, as a local worker
does. Nothing a task needs comes from the sweep's filesystem: the sweep file travels with the
task, the data set is loaded once by the sweep and shipped to every worker (a CSV file need not
be reachable from the workers, and every machine trains on the same arrays, whatever its
scikit-learn version), the model goes to MLflow as an artifact.

- A worker that dies mid-trial: Dask runs its task again elsewhere (up to the scheduler's
  ``allowed-failures``); the retry runs the same trial, with the same parameters, and ends the
  dead attempt's MLflow run first (the sweep ends it after the workers' phase when the dead
  attempt had not drawn its parameters yet).
- Ctrl-C: a Dask ``Event`` of the study is set; running tasks notice it where a local worker
  checks its stop file (every ``report_every`` epochs) and end their trial as interrupted.
- The sweep command dies (kill -9, its machine lost): the scheduler sees its client's
  connection close and lets go of its tasks; each running task sees that in its worker's own
  state at its next check (every few epochs) and ends its trial as interrupted, as after Ctrl-C,
  so nothing is left RUNNING, the worker is free for the next sweep within seconds, and the
  next run retries those trials. The sweep also held the study's lease, a Dask ``Semaphore``
  its client refreshes every 2 s, which the scheduler frees within 20 s of the last refresh:
  the tasks' second sign (a client that is cut off without its connection closing), and what
  refuses a second sweep of the same study on the same cluster from any machine (a re-run
  after a sweep that died waits for its lease instead: the dead sweep's client is gone).
- The end (the re-runs of the best configurations and the peer's fits) runs on the cluster too,
  through joblib's Dask backend (:func:`end_on`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from threadpoolctl import threadpool_limits

from pipeline.config import (
    ConfigError,
    SweepConfig,
    active_credentials,
    first_line,
    mask_credentials,
    missing_extra,
    scheme_of,
)
from pipeline.core import Dataset
from pipeline.results import WorkerReport
from pipeline.search._study import StudyBusyError, fail_trial, reserve_trial
from pipeline.search._worker import WorkerContext, run_one, trial_logger

CONNECT_TIMEOUT = 5.0  # seconds for the scheduler to answer
SHARED_STORAGE = ("grpc", "postgresql", "mysql")
SHARED_TRACKING = ("http", "https", "postgresql", "mysql")
# How long the scheduler keeps a dead sweep's lease: the client refreshes it every fifth of
# this, the scheduler checks every 10 s (Dask's default), so it is freed 10-20 s after the death.
LEASE_TIMEOUT = "10s"
LEASE_WAIT = 25.0  # seconds a re-run waits for a dead sweep's lease to expire
# A task asks the scheduler whether to stop at most this often (a local worker looks at its
# stop file every report; here each look is two round trips to the scheduler).
STOP_CHECK_SECONDS = 1.0


def check_shared(cfg: SweepConfig, storage: str, tracking: str | None) -> None:
    """Every machine must reach the study and the tracking store: no local file will do."""
    if why := missing_extra("distributed", "cluster"):
        raise ConfigError(cfg.source, [f"cluster: {why}"])
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


def scheduler_problem(address: str) -> str | None:
    """Why this process cannot join the Dask scheduler at ``address`` (nothing answers, a secure
    cluster's without its bundle, another cluster's), within seconds; or None."""
    import asyncio

    from distributed.comm import connect as dask_connect

    credentials = active_credentials()
    secure = address.startswith("tls://")
    join = "needs its bundle: --credentials FILE (or $REGSWEEP_CREDENTIALS)"
    if secure and credentials is None:
        return f"the Dask scheduler at {address} is a secure cluster's: it {join}"
    security = _security(address)
    options = security.get_connection_args("client") if security else {}

    async def probe() -> None:  # a connection and Dask's handshake, over TLS for tls://
        comm = await dask_connect(address, timeout=CONNECT_TIMEOUT, **options)
        await comm.close()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        if secure:
            return (
                f"the Dask scheduler at {address} refuses the bundle's certificate, or is not "
                f"this bundle's cluster ({first_line(err)})"
            )
        return (
            f"no Dask scheduler answers at {address}: a secure cluster's is tls:// and {join} "
            f"({first_line(err)})"
        )
    return None


def _security(address: str) -> Any:
    """Dask's TLS settings for ``address``: the active bundle's, for ``tls://``; else None."""
    credentials = active_credentials()
    if address.startswith("tls://") and credentials is not None:
        return credentials.dask_security()
    return None


def connect(cfg: SweepConfig, address: str) -> Any:
    """A client of the scheduler at ``address`` (over TLS, with the active bundle's client
    certificate, for ``tls://``), or one clear line within seconds."""
    from distributed import Client

    if why := scheduler_problem(address):
        raise ConfigError(cfg.source, [f"cluster = {address!r}: {why}"])
    try:
        return Client(
            address, timeout=CONNECT_TIMEOUT, set_as_default=False, security=_security(address)
        )
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


@contextlib.contextmanager
def hold_study(client: Any, study: str) -> Iterator[str]:
    """The study's lease on the cluster, held while this sweep runs it; yields its name, which
    the tasks check. Keyed by the study's name alone, so that the same study reached through
    two spellings of the storage's address is still one study."""
    import dask
    from distributed import Semaphore, Variable

    name = f"pipeline-sweep-{study}"
    holder = Variable(f"pipeline-holder-{study}", client=client)  # the holding client's id
    with dask.config.set({"distributed.scheduler.locks.lease-timeout": LEASE_TIMEOUT}):
        lease = Semaphore(1, name, scheduler_rpc=client.scheduler, loop=client.loop)
        # a sweep that died (kill -9, its machine lost) holds the lease until the scheduler
        # expires it, 10-20 s later, though its tasks have ended: when its client is gone,
        # wait for that rather than refuse the re-run
        if not lease.acquire(timeout=0.5) and (
            _client_connected(client, holder) or not lease.acquire(timeout=LEASE_WAIT)
        ):
            raise StudyBusyError(
                f"study {study!r} is being run by another sweep on this cluster: wait for it "
                "to end, or stop it (Ctrl-C) and re-run to resume"
            )
        holder.set(client.id)
    quiet = _LostSchedulerFilter()
    loggers = [logging.getLogger(n) for n in _LOST_SCHEDULER_LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):  # a lost scheduler frees it anyway
            lease.release()
        # its refresh would go on failing every 2 s with the scheduler gone (``close`` would
        # also remove the semaphore on the scheduler, for every client)
        client.loop.add_callback(lease.refresh_callback.stop)
        for logger in loggers:
            logger.removeFilter(quiet)


def _client_connected(client: Any, holder: Any) -> bool:
    """Whether the client whose id ``holder`` holds is still connected to the scheduler (True
    when it cannot be told: refusing is the safe side)."""
    try:
        holding = holder.get(timeout=1)
    except Exception:  # never set: a sweep of an older version holds it
        return True
    return bool(client.run_on_scheduler(lambda dask_scheduler: holding in dask_scheduler.clients))


_LOST_SCHEDULER_LOGGERS = ("tornado.application", "distributed.semaphore", "distributed.batched")


class _LostSchedulerFilter(logging.Filter):
    """Drops the tracebacks Dask's background work logs once the scheduler is gone (the
    lease's refresh and release, the client's batched stream: a closed comm, then a closed
    connection pool): the sweep says that in one line itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("distributed."):
            # "Release failed ...", "Batched Comm Closed ...", with the lost comm's traceback
            return not record.exc_info
        return "_refresh_leases" not in record.getMessage()  # "Exception in callback ..."


@contextlib.contextmanager
def end_on(client: Any) -> Iterator[None]:
    """The end's joblib calls (re-runs, the peer) as tasks on the cluster: joblib's Dask
    backend, over this client, replaces the local processes they would take otherwise."""
    from joblib import parallel_config

    with client.as_current(), parallel_config(backend="dask"):
        yield


def run_trials(
    client: Any,
    cfg: SweepConfig,
    ctx: WorkerContext,
    study: optuna.Study,
    dataset: Dataset,
    stop: Any,
    lease: str | None,
) -> list[WorkerReport]:
    """Reserve trials and keep every worker thread of the cluster busy with one, until the
    budget, the deadline or the stop request; returns one report per trial run. Raises
    :class:`SchedulerLostError` when the scheduler restarts or stops answering meanwhile."""
    from concurrent.futures import CancelledError  # Dask's lost futures are these

    from distributed import wait
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    try:
        shipped = client.scatter(dataset, broadcast=True)  # once to every worker, not per task
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
                future = client.submit(
                    cluster_trial, cfg, ctx, trial._trial_id, shipped, stop.name, lease, pure=False
                )
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
    except (CancelledError, CommClosedError) as err:
        raise SchedulerLostError(
            f"the Dask scheduler at {client.scheduler.address} restarted or stopped answering "
            f"({first_line(err)}): the trials it was running are lost, and run again when you "
            "run the same command once it is back"
        ) from None


class SchedulerLostError(RuntimeError):
    """The Dask scheduler restarted or went away mid-sweep. ``str()`` is the line to print."""


def cluster_trial(
    cfg: SweepConfig, ctx: WorkerContext, trial_id: int, dataset: Dataset, stop: str, lease: str
) -> WorkerReport:
    """One trial on a Dask worker (see the module's docstring)."""
    from distributed import Event, Semaphore

    from pipeline.quiet import quiet_libraries
    from pipeline.search._study import load_study

    quiet_libraries()  # a Dask worker's process: the sweep command's settings are not there
    report = WorkerReport(worker=0)
    started = time.perf_counter()
    try:
        with threadpool_limits(limits=1, user_api="blas"):  # one BLAS thread per task
            # a sampler of its own per trial, seeded by the trial: a fresh sampler with the
            # sweep's seed in every task would suggest the same first parameters every time
            study = load_study(cfg, ctx.storage, worker=trial_id)
            trial = optuna.Trial(study, trial_id)
            report.current_trial = trial.number  # failed with the error if one comes now
            logger = trial_logger(cfg, ctx)
            # a retry after its worker died mid-training (its parameters are drawn): the dead
            # attempt's run ends first. Any other run left RUNNING is ended with the sweep's
            # own look after the workers' phase; a search of the runs in every task would cost
            # each trial 16-24 ms on the server.
            if logger is not None and ctx.experiment_id is not None and trial.params:
                from pipeline.tracking import close_interrupted_runs

                close_interrupted_runs(logger.client, ctx.experiment_id, trial.number)
            with tempfile.TemporaryDirectory() as models:
                asked, sweep = Event(stop), Semaphore(1, lease)
                asked_or_gone = _at_most_every(  # Ctrl-C, or the sweep's lease expired
                    STOP_CHECK_SECONDS, lambda: asked.is_set() or sweep.get_value() == 0
                )
                forgotten = _task_forgotten()
                run_one(
                    trial,
                    cfg,
                    dataset,
                    logger,
                    models,
                    report,
                    lambda: forgotten() or asked_or_gone(),
                )
    except Exception as err:  # of the machinery, not of training: said once by the sweep
        report.error = f"trial task: {type(err).__name__}: {err}"
    report.busy_seconds = time.perf_counter() - started
    return report


def _task_forgotten() -> Callable[[], bool]:
    """Whether the scheduler has let go of the running task: the sweep that submitted it
    disconnected (killed, its machine lost) or cancelled it. The scheduler tells the worker
    at once, which marks the task ``cancelled`` in its own state: a look in this process, no
    round trip, so it is asked at every check, and the worker is free within an epoch or so
    rather than when the lease expires (10-20 s later)."""
    from distributed import get_worker
    from distributed.worker import thread_state

    worker, key = get_worker(), thread_state.key

    def forgotten() -> bool:
        task = worker.state.tasks.get(key)
        return task is None or task.state == "cancelled"

    return forgotten


def _at_most_every(seconds: float, check: Callable[[], bool]) -> Callable[[], bool]:
    """``check``, asked again only once ``seconds`` have passed; its last answer meanwhile."""
    at, answer = -math.inf, False

    def throttled() -> bool:
        nonlocal at, answer
        now = time.monotonic()
        if now - at >= seconds:
            at, answer = now, check()
        return answer

    return throttled
