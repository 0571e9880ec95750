"""The workers' phase of a sweep: the budget's trials on local worker processes (joblib's loky,
started early and warmed up) or as tasks on a Dask cluster, progress shown meanwhile, Ctrl-C
(or SIGTERM) asking them to stop, a worker that dies replaced and its trial retried, and what
the workers could not end settled afterwards."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from joblib import Parallel, delayed
from joblib.externals.loky.process_executor import BrokenProcessPool
from rich.console import Console

from pipeline.config import (
    SweepConfig,
    first_line,
    mask_credentials,
)
from pipeline.core import Dataset
from pipeline.results import WorkerReport
from pipeline.search import _dask as dask_tasks
from pipeline.search import _study as st
from pipeline.search._console import show_progress
from pipeline.search._worker import WorkerContext, run_worker, warm_up

MAX_RESTARTS = 3  # rounds of workers restarted after one of them died


def warm_workers(cfg: SweepConfig, client: Any = None) -> threading.Thread:
    """Start the worker processes now, in the background, and have each make its imports and
    load the data set while this process does the same and opens the stores (seconds on a
    fresh store). The workers' phase then reuses the same processes (joblib keeps them for the
    same settings). With a cluster, its workers make the imports (the first trial on a fresh
    worker would wait for them) and the local processes serve the end's figures."""

    def target() -> None:
        with contextlib.suppress(Exception):  # the workers' phase reports any error itself
            local = Parallel(n_jobs=cfg.study.n_jobs, backend="loky", return_as="generator")(
                delayed(warm_up)(cfg) for _ in range(cfg.study.n_jobs)
            )  # dispatched now; the cluster's workers meanwhile
            if client is not None:
                client.run(warm_up, cfg, data=False)
            list(local)

    thread = threading.Thread(target=target, name="warm-workers", daemon=True)
    thread.start()
    return thread


def workers_phase(
    cfg: SweepConfig,
    ctx: WorkerContext,
    study: optuna.Study,
    dataset: Dataset,
    console: Console,
    cluster: tuple[Any, str | None] | None,
    tracker: Any,
) -> tuple[list[WorkerReport], list[str], bool]:
    """The trials, on local worker processes or the cluster: the workers' reports, errors that
    stopped them, and whether Ctrl-C did. A worker process that dies is replaced and its trial
    retried, up to MAX_RESTARTS times."""
    reports: list[WorkerReport] = []
    for _ in range(MAX_RESTARTS + 1):
        try:
            if cluster is not None:
                reports += _run_on_cluster(cfg, ctx, study, dataset, console, *cluster)
            else:
                reports += _run_workers(cfg, ctx, study, console)
            return reports, [], False
        except KeyboardInterrupt:
            return reports, [], True
        except BrokenProcessPool as err:  # TerminatedWorkerError among them
            # a worker process died (kill -9, segfault): recover its trial, go on
            console.print(
                f"[red]a worker died ({type(err).__name__}); its trial is marked "
                "interrupted and retried[/]"
            )
            st.recover_interrupted(study, ctx.storage)
            if tracker:
                tracker.close_interrupted_runs()
        except dask_tasks.SchedulerLostError as err:
            return reports, [str(err)], False
        except Exception as err:  # an error outside the workers' own handling
            return reports, [f"{type(err).__name__}: {first_line(err)}"], False
    console.print("[red]workers kept dying; stopping. Re-run the same command to resume.[/]")
    return reports, [], False


def settle(study: optuna.Study, url: str, reports: list[WorkerReport], tracker: Any) -> list[str]:
    """After the workers' phase: a trial an error stopped is failed with it, one the workers
    could not end is queued again, and runs left RUNNING are ended. Returns the errors."""
    errors = []
    for report in reports:
        if report.error is not None:
            errors.append(mask_credentials(report.error))
            if report.current_trial is not None:  # that trial failed with the error
                st.fail_trial(study, url, report.current_trial, report.error, False)
                if tracker:
                    tracker.fail_trial_run(report.current_trial, report.error)
    st.recover_interrupted(study, url)  # a trial the workers could not end
    if tracker:  # runs left RUNNING by a worker that did not get to end them
        tracker.close_interrupted_runs()
    return errors


def _run_workers(
    cfg: SweepConfig, ctx: WorkerContext, study: optuna.Study, console: Console
) -> list[WorkerReport]:
    """Local worker processes, asked to stop through the stop file."""
    return _in_background(
        cfg,
        study,
        console,
        lambda: Parallel(n_jobs=cfg.study.n_jobs, backend="loky")(
            delayed(run_worker)(cfg, worker, ctx) for worker in range(cfg.study.n_jobs)
        ),
        Path(ctx.stop_file).touch,
    )


def _run_on_cluster(
    cfg: SweepConfig,
    ctx: WorkerContext,
    study: optuna.Study,
    dataset: Dataset,
    console: Console,
    client: Any,
    lease: str | None,
) -> list[WorkerReport]:
    """The trials as tasks on the cluster, asked to stop through the study's Dask event."""

    stop = dask_tasks.stop_event(client, cfg.study.name)
    return _in_background(
        cfg,
        study,
        console,
        lambda: dask_tasks.run_trials(client, cfg, ctx, study, dataset, stop, lease),
        stop.set,
    )


def _in_background(
    cfg: SweepConfig,
    study: optuna.Study,
    console: Console,
    work: Callable[[], list[WorkerReport]],
    request_stop: Callable[[], Any],
) -> list[WorkerReport]:
    """The work runs in a background thread; this thread shows progress until it is done.
    Ctrl-C requests a stop and waits for the running trials to end."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            outcome["reports"] = work()
        except BaseException as err:  # re-raised in the calling thread
            outcome["error"] = err
        finally:
            done.set()

    thread = threading.Thread(target=target, name="sweep-workers", daemon=True)
    try:
        thread.start()  # Ctrl-C may land while start() waits for the thread: inside the try
        show_progress(cfg, study, done, console)
    except KeyboardInterrupt:
        request_stop()
        console.print(
            "[yellow]stopping: the running trials end at their next epoch "
            "(Ctrl-C again to leave now)[/]"
        )
        if thread.ident is not None:  # started
            thread.join()
        raise
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["reports"]
