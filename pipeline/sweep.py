"""The sweep runner (parent process): prepares the study and the MLflow store, runs the workers,
shows progress, and at the end evaluates the best configuration once on the test split.

Nothing is written before the sweep file, the overrides and the data set have been checked.
"""

from __future__ import annotations

import math
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from joblib import Parallel, delayed
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from pipeline import study as st
from pipeline.config import ConfigError, SweepConfig
from pipeline.data import Dataset, load
from pipeline.mlp import MLP
from pipeline.objective import build_model, hyperparameters
from pipeline.worker import WorkerContext, WorkerReport, model_path, run_worker

MAX_RESTARTS = 3  # rounds of workers restarted after one of them died


@dataclass
class SweepSummary:
    study_name: str
    n_trials: int
    states: dict[str, int]
    best: FrozenTrial | None
    test_metrics: dict[str, dict[str, float]]  # "best" and each baseline -> test metrics
    wall_seconds: float  # the whole sweep, set up to summary
    parallel_seconds: float  # the workers' phase
    compute_seconds: float  # training (MLP.fit) inside all trials
    n_jobs: int
    tracking_seconds: float = 0.0  # MLflow logging inside the workers
    worker_seconds: float = 0.0
    interrupted: bool = False
    parent_run_id: str | None = None

    @property
    def parallel_overhead(self) -> float:
        """Core-seconds of the workers' phase not spent training (process start-up, sampling,
        storage, logging, idle workers), as a share of the training's own core-seconds."""
        if self.compute_seconds <= 0:
            return math.nan
        return (self.parallel_seconds * self.n_jobs - self.compute_seconds) / self.compute_seconds


def _load_data(cfg: SweepConfig) -> Dataset:
    try:
        return load(cfg.data.name, seed=cfg.data.seed, **cfg.data.options)
    except ValueError as err:
        raise ConfigError(cfg.source, [f"data: {err}"]) from None


def _state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    counts = {"complete": 0, "pruned": 0, "failed": 0, "running": 0, "waiting": 0}
    names = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "failed",
        TrialState.RUNNING: "running",
        TrialState.WAITING: "waiting",
    }
    for t in trials:
        if st.counts_toward_budget(t) or t.state == TrialState.WAITING:
            counts[names[t.state]] += 1
    return counts


def _best(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


def run_sweep(
    cfg: SweepConfig,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    sweep_file: str | None = None,
    console: Console | None = None,
) -> SweepSummary:
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    started = time.perf_counter()
    dataset = _load_data(cfg)  # a bad data set is a bad sweep file: nothing written yet
    url = st.storage_url(cfg, storage)
    tracker = None
    if cfg.tracking.enabled:  # before the study: an unreachable store must not leave one
        from pipeline.tracking import StudyTracker

        try:
            tracker = StudyTracker.open(cfg, url, tracking_uri, sweep_file)
        except Exception as err:
            raise ConfigError(
                cfg.source, [f"tracking uri: cannot use the MLflow store: {err}"]
            ) from None
    try:
        study = st.create_study(cfg, url)
    except Exception as err:
        raise ConfigError(
            cfg.source, [f"storage = {url!r}: cannot open the study: {err}"]
        ) from None
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
        f"trials done before, {cfg.study.n_jobs} worker(s), storage {url}"
        + (f", MLflow {tracker.uri}" if tracker else ", MLflow off")
    )

    models_dir = st.models_dir(url, cfg.study.name)
    deadline = time.time() + cfg.study.timeout if cfg.study.timeout else None
    reports: list[WorkerReport] = []
    interrupted = False
    with tempfile.TemporaryDirectory() as tmp:
        stop_file = Path(tmp) / "stop"
        ctx = WorkerContext(
            storage=url,
            deadline=deadline,
            stop_file=str(stop_file),
            models_dir=str(models_dir),
            tracking_uri=tracker.uri if tracker else None,
            experiment_id=tracker.experiment_id if tracker else None,
            parent_run_id=tracker.run_id if tracker else None,
        )
        parallel_started = time.perf_counter()
        for _ in range(MAX_RESTARTS + 1):
            try:
                reports += _run_workers(cfg, ctx, study, console)
                break
            except KeyboardInterrupt:
                interrupted = True
                break
            except Exception as err:  # a worker died (kill -9, segfault): recover, go on
                console.print(
                    f"[red]a worker died ({type(err).__name__}); its trial is marked "
                    "interrupted and retried[/]"
                )
                st.recover_interrupted(study, url)
                if tracker:
                    tracker.close_interrupted_runs()
        else:
            console.print(
                "[red]workers kept dying; stopping. Re-run the same command to resume.[/]"
            )
        parallel_seconds = time.perf_counter() - parallel_started
        # runs left RUNNING by a worker that did not get to end them
        if tracker:
            tracker.close_interrupted_runs()

    summary = SweepSummary(
        study_name=cfg.study.name,
        n_trials=cfg.study.n_trials,
        states=_state_counts(study.get_trials(deepcopy=False)),
        best=_best(study),
        test_metrics={},
        wall_seconds=math.nan,
        parallel_seconds=parallel_seconds,
        compute_seconds=sum(r.compute_seconds for r in reports),
        n_jobs=cfg.study.n_jobs,
        tracking_seconds=sum(r.tracking_seconds for r in reports),
        worker_seconds=sum(r.busy_seconds for r in reports),
        interrupted=interrupted,
        parent_run_id=tracker.run_id if tracker else None,
    )
    if not interrupted:
        summary.test_metrics = evaluate_on_test(cfg, study, dataset, models_dir)
    summary.wall_seconds = time.perf_counter() - started
    if tracker:
        tracker.finish(study, summary)
        summary.wall_seconds = time.perf_counter() - started
    print_summary(cfg, study, summary, console)
    return summary


def _run_workers(
    cfg: SweepConfig, ctx: WorkerContext, study: optuna.Study, console: Console
) -> list[WorkerReport]:
    """Workers run in a background thread; this thread shows progress until they are done.
    Ctrl-C asks them to stop (through the stop file) and waits for them to end their trials."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["reports"] = Parallel(n_jobs=cfg.study.n_jobs, backend="loky")(
                delayed(run_worker)(cfg, worker, ctx) for worker in range(cfg.study.n_jobs)
            )
        except BaseException as err:  # re-raised in the calling thread
            outcome["error"] = err

    thread = threading.Thread(target=target, name="sweep-workers", daemon=True)
    thread.start()
    try:
        _show_progress(cfg, study, thread, console)
    except KeyboardInterrupt:
        Path(ctx.stop_file).touch()
        console.print(
            "[yellow]stopping: the running trials end at their next epoch "
            "(Ctrl-C again to leave now)[/]"
        )
        thread.join()
        raise
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["reports"]


def _show_progress(
    cfg: SweepConfig, study: optuna.Study, thread: threading.Thread, console: Console
) -> None:
    total = cfg.study.n_trials
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )
    seen: set[int] = set()
    with progress:
        task = progress.add_task("trials", total=total)
        while True:
            alive = thread.is_alive()
            trials = study.get_trials(deepcopy=False)
            finished = [t for t in trials if t.state.is_finished() and st.counts_toward_budget(t)]
            counts = _state_counts(trials)
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            pick = max if cfg.direction == "maximize" else min
            best = pick(complete, key=lambda t: t.value) if complete else None
            best_text = _best_text(best)
            progress.update(
                task,
                completed=len(finished),
                description=(
                    f"{counts['complete']} complete, {counts['pruned']} pruned, "
                    f"{counts['failed']} failed; {best_text}"
                ),
            )
            if not console.is_terminal:
                for t in finished:
                    if t.number not in seen:
                        seen.add(t.number)
                        value = f"{t.value:.4g}" if t.value is not None else "-"
                        console.print(
                            f"trial {t.number:4d} {t.state.name.lower():8s} value {value:>8s}"
                            f"  [{len(seen)}/{total}] {best_text}",
                            highlight=False,
                            soft_wrap=True,
                        )
            if not alive:
                return
            time.sleep(1.0)


def _best_text(best: FrozenTrial | None) -> str:
    """The best value so far and its parameters, for the progress display."""
    if best is None:
        return "best -"
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
    return f"best {best.value:.4g} (#{best.number}{': ' + params if params else ''})"


def evaluate_on_test(
    cfg: SweepConfig, study: optuna.Study, d: Dataset, models_dir: Path
) -> dict[str, dict[str, Any]]:
    """The best configuration (chosen on validation) and each baseline, evaluated once on the
    test split. Their networks are the ones the workers saved; a missing one is retrained
    (same seed, so the same network). Either way it is checked against the trial's value."""
    chosen: dict[str, FrozenTrial] = {}
    best = _best(study)
    if best is not None:
        chosen["best"] = best
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        name = t.user_attrs.get(st.BASELINE)
        if name and name not in chosen:
            chosen[name] = t
    trials = {t.number: t for t in chosen.values()}
    missing = [t for n, t in trials.items() if not model_path(models_dir, n).exists()]
    retrained = Parallel(n_jobs=min(cfg.study.n_jobs, len(missing) or 1), backend="loky")(
        delayed(_retrain)(cfg, t, d) for t in missing
    )
    by_number = {t.number: m for t, m in zip(missing, retrained, strict=True)}
    for n in trials.keys() - by_number.keys():
        by_number[n] = MLP.load(model_path(models_dir, n))
    results = {}
    for name, t in chosen.items():
        model = by_number[t.number]
        val = model.evaluate(d.X_val, d.y_val)
        test = model.evaluate(d.X_test, d.y_test)
        results[name] = {
            "trial": t.number,
            "val_loss": val["loss"],
            "test_loss": test["loss"],
            "model": model,
        }
        if "accuracy" in test:
            results[name] |= {"val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"]}
        if not math.isclose(results[name][cfg.study.metric], t.value, rel_tol=1e-9, abs_tol=1e-12):
            print(
                f"warning: retraining trial {t.number} gave {cfg.study.metric} "
                f"{results[name][cfg.study.metric]} instead of {t.value}",
                file=sys.stderr,
            )
    return results


def _retrain(cfg: SweepConfig, t: FrozenTrial, d: Dataset) -> Any:
    from threadpoolctl import threadpool_limits

    values = hyperparameters(cfg, t.params, t.user_attrs.get(st.OVERRIDES))
    with threadpool_limits(limits=1, user_api="blas"):
        return build_model(values, d.task).fit(d.X_train, d.y_train, d.X_val, d.y_val)


def print_summary(
    cfg: SweepConfig, study: optuna.Study, summary: SweepSummary, console: Console
) -> None:
    states = summary.states
    console.print(
        f"\n[bold]{cfg.study.name}[/]: {states['complete']} complete, {states['pruned']} pruned, "
        f"{states['failed']} failed of {cfg.study.n_trials}; wall {summary.wall_seconds:.1f} s, "
        f"training {summary.compute_seconds:.1f} s and MLflow logging "
        f"{summary.tracking_seconds:.1f} s in {summary.worker_seconds:.1f} s of "
        f"{summary.n_jobs} worker(s)"
    )
    if summary.interrupted:
        console.print("[yellow]interrupted: re-run the same command to resume the study[/]")
    elif summary.parent_run_id:
        console.print(
            f"browse the runs with `make ui` (experiment {cfg.study.name}); "
            "answer the question with `make report`",
            highlight=False,
        )
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        return
    reverse = cfg.direction == "maximize"
    top = sorted(complete, key=lambda t: t.value, reverse=reverse)[:5]
    table = Table(title=f"best trials by {cfg.study.metric} ({cfg.direction})")
    table.add_column("trial", justify="right")
    table.add_column(cfg.study.metric, justify="right")
    for key in cfg.search:
        table.add_column(key, justify="right")
    table.add_column("baseline")
    for t in top:
        values = hyperparameters(cfg, t.params, t.user_attrs.get(st.OVERRIDES))
        table.add_row(
            str(t.number),
            f"{t.value:.4g}",
            *[_fmt(values.get(k)) for k in cfg.search],
            t.user_attrs.get(st.BASELINE, ""),
        )
    console.print(table)
    if summary.test_metrics:
        tests = Table(title="test split (evaluated once, after selection on validation)")
        for column in ("configuration", "trial", cfg.study.metric, "test_loss"):
            tests.add_column(column, justify="right")
        with_acc = any("test_accuracy" in m for m in summary.test_metrics.values())
        if with_acc:
            tests.add_column("test_accuracy", justify="right")
        for name, m in summary.test_metrics.items():
            row = [name, str(m["trial"]), f"{m[cfg.study.metric]:.4g}", f"{m['test_loss']:.4g}"]
            if with_acc:
                row.append(f"{m.get('test_accuracy', math.nan):.4g}")
            tests.add_row(*row)
        console.print(tests)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)
