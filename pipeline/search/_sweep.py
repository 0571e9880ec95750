"""The sweep runner (parent process): prepares the study and the MLflow store, runs the workers
(with a restart when one dies), and hands the end to the test evaluation and the console.

Nothing is written before the sweep file, the overrides and the data set have been checked.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console

from pipeline.config import (
    MIN_FREE_MIB,
    ConfigError,
    SweepConfig,
    first_line,
    free_mib,
    mask_credentials,
)
from pipeline.core import Dataset, load, smallest_class, splits_of
from pipeline.results import SweepSummary, WorkerReport
from pipeline.search import _answer as answer
from pipeline.search import _dask as dask_tasks
from pipeline.search import _study as st
from pipeline.search._ablation import ablation
from pipeline.search._console import print_summary
from pipeline.search._evaluation import evaluate_on_test
from pipeline.search._figures import log_end_figures
from pipeline.search._peer import peer_results
from pipeline.search._phase import settle, warm_workers, workers_phase
from pipeline.search._worker import WorkerContext
from pipeline.tracking import PARETO_KEY, runs_link, ui_base, where_to_look


def load_data(cfg: SweepConfig) -> Dataset:
    """The sweep's data set, its folds checked; a problem is the sweep file's (ConfigError)."""
    try:
        dataset = load(cfg.data.name, seed=cfg.data.seed, **cfg.data.options)
    except ValueError as err:
        raise ConfigError(cfg.source, [f"data: {err}"]) from None
    if cfg.study.folds:
        _check_folds(cfg, dataset)
    return dataset


def _check_folds(cfg: SweepConfig, d: Dataset) -> None:
    """Every fold needs a member of every class (stratified) and at least one row."""
    pooled = len(d.y_train) + len(d.y_val)
    most, why = pooled, f"rows in the training and validation data of {d.name!r}"
    if d.task == "classification":
        most = smallest_class(d)
        why = f"members of the smallest class in the training and validation data of {d.name!r}"
    if cfg.study.folds is not None and cfg.study.folds > most:
        raise ConfigError(
            cfg.source,
            [
                f"study.folds = {cfg.study.folds}: more folds than the {most} {why}; "
                f"allowed: 2..{most}"
            ],
        )


def run_sweep(
    cfg: SweepConfig,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    sweep_file: str | None = None,
    console: Console | None = None,
    cluster: str | None = None,
) -> SweepSummary:
    """Run (or resume) the study, its trials in local worker processes or, with ``cluster``
    (or ``[study] cluster``, or $DASK_SCHEDULER_ADDRESS), as tasks on a Dask cluster. Raises
    :class:`ConfigError` before anything is written when the data set, a store or the cluster
    cannot be used, or when another sweep is running the study."""
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    started = time.perf_counter()
    url = st.storage_url(cfg, storage)
    address = cluster or cfg.study.cluster or os.environ.get("DASK_SCHEDULER_ADDRESS")
    client = _connect(cfg, address, url, tracking_uri) if address else None
    warming = warm_workers(cfg, client)
    try:
        dataset = load_data(cfg)  # a bad data set is a bad sweep file: nothing written yet
        with st.hold_study(url, cfg.study.name), _cluster_lease(client, cfg.study.name) as lease:
            return _run(
                cfg,
                dataset,
                url,
                tracking_uri,
                sweep_file,
                console,
                started,
                warming,
                None if client is None else (client, lease),
            )
    except st.StudyBusyError as err:
        raise ConfigError(cfg.source, [str(err)]) from None
    except Exception as err:
        if disk_full(err):  # a write of this process: one line, no traceback
            raise DiskFullError(_full_disks(cfg, url, tracking_uri)) from None
        raise
    finally:
        warming.join()
        if client is not None:
            client.close()


class DiskFullError(Exception):
    """A disk the sweep writes to filled up. ``str()`` is the line for the user."""


def disk_full(err: BaseException | str) -> bool:
    """Whether an error (or a worker's report of one) is a full disk: the OS's, or SQLite's
    through MLflow."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    text = err if isinstance(err, str) else f"{err!r} {err}"
    return "No space left on device" in text or "database or disk is full" in text


def _full_disks(cfg: SweepConfig, url: str, tracking: str | None) -> str:
    from pipeline.tracking import tracking_uri as resolved

    folders = [] if "://" in url else [Path(url).resolve().parent]
    uri = resolved(tracking or cfg.tracking.uri) if cfg.tracking.enabled else ""
    if uri.startswith("sqlite:///"):
        folders.append(Path(uri.removeprefix("sqlite:///")).resolve().parent)
    where = ", ".join(f"{f} ({free_mib(f):.0f} MiB free now)" for f in dict.fromkeys(folders))
    return (
        f"no space left on device: free at least {MIN_FREE_MIB} MiB on the disk of "
        f"{where or 'the stores'} and run the same command again; no completed trial is lost"
    )


def _end_runs(tracker: Any) -> None:
    """The runs left RUNNING and the parent ended, where the store can still be written."""
    if tracker is None:
        return
    with contextlib.suppress(Exception):
        tracker.close_interrupted_runs()
        tracker.end_killed()


def _connect(cfg: SweepConfig, address: str, url: str, tracking: str | None) -> Any:
    from pipeline.tracking import tracking_uri as resolved

    dask_tasks.check_shared(cfg, url, resolved(tracking) if cfg.tracking.enabled else None)
    return dask_tasks.connect(cfg, address)


def _cluster_lease(client: Any, study: str) -> contextlib.AbstractContextManager[str | None]:
    if client is None:
        return contextlib.nullcontext()

    return dask_tasks.hold_study(client, study)


def _open_stores(
    cfg: SweepConfig, url: str, tracking_uri: str | None, sweep_file: str | None
) -> tuple[optuna.Study, Any]:
    """The study, and the MLflow experiment and parent run (None with tracking off)."""
    tracker = None
    problem = st.objectives_problem(cfg, url)
    if problem:  # before the tracker writes the parent run's tags
        raise ConfigError(cfg.source, [problem])
    if cfg.tracking.enabled:  # before the study: an unreachable store must not leave one
        from pipeline.tracking import StudyTracker

        try:
            tracker = StudyTracker.open(cfg, url, tracking_uri, sweep_file)
        except Exception as err:
            if disk_full(err):
                raise
            raise ConfigError(
                cfg.source, [f"tracking uri: cannot use the MLflow store: {first_line(err)}"]
            ) from None
    try:
        study = st.create_study(cfg, url)
    except Exception as err:
        if disk_full(err):
            raise
        raise ConfigError(
            cfg.source,
            [f"storage = {mask_credentials(url)!r}: cannot open the study: {first_line(err)}"],
        ) from None
    return study, tracker


def _run(
    cfg: SweepConfig,
    dataset: Dataset,
    url: str,
    tracking_uri: str | None,
    sweep_file: str | None,
    console: Console,
    started: float,
    warming: threading.Thread,
    cluster: tuple[Any, str | None] | None = None,  # the Dask client, the study's lease
) -> SweepSummary:
    repaired = st.repair_storage(url)
    if repaired:
        console.print(f"[yellow]{repaired}[/]", highlight=False)
    study, tracker = _open_stores(cfg, url, tracking_uri, sweep_file)
    if tracker:
        tracker.log_data(dataset)
    try:
        summary = _search(cfg, dataset, url, study, tracker, console, started, warming, cluster)
        if any(map(disk_full, summary.errors)):  # a worker's write: stop, say where
            _end_runs(tracker)
            raise DiskFullError(_full_disks(cfg, url, tracking_uri))
        evaluation_started = time.perf_counter()
        with _end_on(cluster):
            _evaluate(cfg, study, dataset, st.models_dir(url, cfg.study.name), summary)
        summary.evaluation_seconds = time.perf_counter() - evaluation_started
        summary.wall_seconds = time.perf_counter() - started
        if tracker:
            _track_end(cfg, tracker, study, summary, dataset, url)
            summary.wall_seconds = time.perf_counter() - started
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM outside the workers' phase (which ends its own trials), or a second
        # one: the runs left running and the parent are ended; the next run picks up from here
        _end_runs(tracker)
        raise
    print_summary(cfg, study, summary, console)
    return summary


def _search(
    cfg: SweepConfig,
    dataset: Dataset,
    url: str,
    study: optuna.Study,
    tracker: Any,
    console: Console,
    started: float,
    warming: threading.Thread,
    cluster: tuple[Any, str | None] | None,
) -> SweepSummary:
    """The budget's trials, on the workers: what they did, summed up."""
    _prepare_study(cfg, study, url, tracker, console)
    deadline = time.time() + cfg.study.timeout if cfg.study.timeout else None
    with tempfile.TemporaryDirectory() as tmp:
        ctx = WorkerContext(
            storage=url,
            deadline=deadline,
            stop_file=str(Path(tmp) / "stop"),
            models_dir=str(st.models_dir(url, cfg.study.name)),
            tracking_uri=tracker.uri if tracker else None,
            experiment_id=tracker.experiment_id if tracker else None,
            parent_run_id=tracker.run_id if tracker else None,
            source_tags=tracker.source if tracker else {},
        )
        warming.join()  # the workers' phase takes over the warmed processes
        parallel_started = time.perf_counter()
        reports, errors, interrupted = workers_phase(
            cfg, ctx, study, dataset, console, cluster, tracker
        )
        parallel_seconds = time.perf_counter() - parallel_started
        errors += settle(study, url, reports, tracker)
    summary = _summary(cfg, study, reports, errors, tracker)
    summary.interrupted = interrupted
    summary.parallel_seconds = parallel_seconds
    summary.setup_seconds = parallel_started - started
    return summary


def _summary(
    cfg: SweepConfig,
    study: optuna.Study,
    reports: list[WorkerReport],
    errors: list[str],
    tracker: Any,
) -> SweepSummary:
    """What the workers' phase did, summed over the workers' reports."""
    return SweepSummary(
        study_name=cfg.study.name,
        n_trials=cfg.study.n_trials,
        states=st.state_counts(study.get_trials(deepcopy=False)),
        best=st.best_trial(study),
        test_metrics={},
        wall_seconds=math.nan,
        parallel_seconds=math.nan,
        compute_seconds=sum(r.compute_seconds for r in reports),
        n_jobs=cfg.study.n_jobs,
        tracking_seconds=sum(r.tracking_seconds for r in reports),
        worker_seconds=sum(r.busy_seconds for r in reports),
        parent_run_id=tracker.run_id if tracker else None,
        hints=_hints(cfg, tracker),
        errors=errors,
    )


def _hints(cfg: SweepConfig, tracker: Any) -> list[str]:
    """Where to look: the trials, the report, and a study's Pareto front."""
    if not tracker:
        return []
    hints = where_to_look(tracker.uri, tracker.experiment_id)
    if cfg.multi:
        base = ui_base(tracker.uri)
        hints.append("the Pareto front, in the same UI:")
        hints.append(f"  {runs_link(base, tracker.experiment_id, PARETO_KEY)}")
    return hints


def _prepare_study(
    cfg: SweepConfig, study: optuna.Study, url: str, tracker: Any, console: Console
) -> None:
    """Trials a dead sweep left running queued again, the baselines queued, and where the
    study stands said."""
    recovered = st.recover_interrupted(study, url)
    if recovered:
        console.print(
            f"[yellow]trials {recovered} were left running by a sweep that stopped; "
            "marked failed (interrupted) and queued again[/]"
        )
    st.enqueue_baselines(study, cfg)
    done_before = st.budget_used(study)
    console.print(
        f"study [bold]{cfg.study.name}[/]: {done_before} of {cfg.study.n_trials} "
        f"trials done before, {cfg.study.n_jobs} worker(s), storage {mask_credentials(url)}"
        + (f", MLflow {mask_credentials(tracker.uri)}" if tracker else ", MLflow off"),
        highlight=False,
    )


def _track_end(
    cfg: SweepConfig,
    tracker: Any,
    study: optuna.Study,
    summary: SweepSummary,
    dataset: Dataset,
    url: str,
) -> None:
    """The parent run's summary, the figures (of the networks saved, trained on the first
    split, drawn by the warm workers), then its status."""
    started = time.perf_counter()
    runs = tracker.trial_runs()  # trial number -> run id: one search of the store for the end
    best_run = runs.get(summary.best.number) if summary.best else None
    note = answer.study_note(summary, tracker.experiment_id, best_run, cfg.objective)
    tracker.finish(study, summary, note, runs, dataset, cfg.tracking.register_as)
    first = splits_of(dataset, cfg.study.folds, cfg.study.seed)[0]
    log_end_figures(tracker, study, summary, first, url, cfg.study.n_jobs, runs)
    tracker.end(summary, time.perf_counter() - started)


def _end_on(cluster: tuple[Any, str | None] | None) -> contextlib.AbstractContextManager[None]:
    """Where the end's re-runs and the peer's fits run: the cluster when the trials did, else
    this machine's worker processes."""
    if cluster is None:
        return contextlib.nullcontext()
    from pipeline.search._dask import end_on

    return end_on(cluster[0])


@contextlib.contextmanager
def _timed(summary: SweepSummary, part: str) -> Iterator[None]:
    """The seconds a part of the end takes, into ``summary.end_seconds[part]``."""
    clock = time.perf_counter()
    try:
        yield
    finally:
        summary.end_seconds[part] = time.perf_counter() - clock


def _evaluate(
    cfg: SweepConfig, study: optuna.Study, dataset: Dataset, models_dir: Path, summary: SweepSummary
) -> None:
    """The end of a sweep that ran to its end: the choice, the test figures, the peer and the
    answer in words, into ``summary``."""
    if not summary.interrupted and not summary.errors:
        with _timed(summary, "choice and test"):
            evaluation = evaluate_on_test(cfg, study, dataset, models_dir)
            summary.test_metrics = evaluation.tests
            summary.best = evaluation.chosen
            summary.reruns, summary.selection = evaluation.reruns, evaluation.selection
            summary.delivered = evaluation.delivered
        with _timed(summary, "ablation"):
            summary.ablation = ablation(cfg, evaluation, dataset)
        with _timed(summary, "peer"):
            if cfg.study.peer and "best" in summary.test_metrics:  # the chosen network's sizes
                hidden = summary.test_metrics["best"]["model"].hidden
                summary.peers = peer_results(
                    dataset,
                    hidden,
                    cfg.study.metric,
                    cfg.study.seed,
                    cfg.study.n_jobs,
                    cfg.study.folds,
                    refit=cfg.study.deliver != "trial",  # trained on what the study's model is
                )
        summary.answer = answer.sentences(cfg, study, summary)
