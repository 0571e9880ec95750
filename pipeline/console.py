"""What a sweep shows on the console: live progress while the workers run, and the summary
tables at the end (best trials, and the test split evaluated once)."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from typing import Any

import optuna
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
from pipeline.config import SweepConfig, trial_values
from pipeline.names import (
    BASELINE,
    COMPLETE,
    FAIL_REASON,
    FAILED,
    INTERRUPTED_ATTR,
    OVERRIDES,
    PRUNED,
)
from pipeline.peer import LABELS
from pipeline.results import SweepSummary


def show_progress(
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
            counts = st.state_counts(trials)
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            pick = max if cfg.direction == "maximize" else min
            best = pick(complete, key=lambda t: t.value) if complete else None
            best_text = _best_text(best, cfg.objective)
            progress.update(
                task,
                completed=len(finished),
                description=(
                    f"{counts[COMPLETE]} complete, {counts[PRUNED]} pruned, "
                    f"{counts[FAILED]} failed; {best_text}"
                ),
            )
            if not console.is_terminal:
                for t in finished:
                    if t.number not in seen:
                        seen.add(t.number)
                        value = f"{t.value:.4g}" if t.value is not None else "-"
                        console.print(
                            f"trial {t.number:4d} {t.state.name.lower():8s} "
                            f"{cfg.objective} {value:>8s}"
                            f"  [{len(seen)}/{total}] {best_text}",
                            highlight=False,
                            soft_wrap=True,
                        )
            if not alive:
                return
            time.sleep(1.0)


def _best_text(best: FrozenTrial | None, objective: str) -> str:
    """The best value so far and its parameters, for the progress display."""
    if best is None:
        return f"best {objective} -"
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
    return f"best {objective} {best.value:.4g} (#{best.number}{': ' + params if params else ''})"


def print_summary(
    cfg: SweepConfig, study: optuna.Study, summary: SweepSummary, console: Console
) -> None:
    states = summary.states
    console.print(
        f"\n[bold]{cfg.study.name}[/]: {states[COMPLETE]} complete, {states[PRUNED]} pruned, "
        f"{states[FAILED]} failed of {cfg.study.n_trials}; wall {summary.wall_seconds:.1f} s, "
        f"training {summary.compute_seconds:.1f} s and MLflow logging "
        f"{summary.tracking_seconds:.1f} s in {summary.worker_seconds:.1f} s of "
        f"{summary.n_jobs} worker(s)"
    )
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    reasons = Counter(
        t.user_attrs.get(FAIL_REASON, "no reason recorded")
        for t in failed
        if not t.user_attrs.get(INTERRUPTED_ATTR)
        and t.user_attrs.get(FAIL_REASON) not in summary.errors  # said once, below
    )
    for reason, count in reasons.most_common(3):
        console.print(f"[red]{count} trial(s) failed: {reason}[/]", highlight=False)
    if len(reasons) > 3:
        others = sum(reasons.values()) - sum(c for _, c in reasons.most_common(3))
        console.print(f"[red]{others} more failed trial(s): see `make report`[/]")
    for error in summary.errors:
        console.print(f"[red]error: {error}[/]", highlight=False)
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if summary.interrupted:
        console.print("[yellow]interrupted: re-run the same command to resume the study[/]")
    elif not complete:
        console.print("[red]no trial completed: nothing to report[/]")
    elif summary.runs_link:  # on a line of its own, never wrapped: a link to click
        console.print("browse the trials, best first: `make ui`, then open", highlight=False)
        console.print(f"  {summary.runs_link}", highlight=False, soft_wrap=True)
        console.print("answer the question: `make report`", highlight=False)
    if not complete:
        return
    reverse = cfg.direction == "maximize"
    top = sorted(complete, key=lambda t: t.value, reverse=reverse)[:5]
    table = Table(title=f"best trials by {cfg.objective} ({cfg.direction})")
    table.add_column("trial", justify="right")
    table.add_column(cfg.objective, justify="right")
    for key in cfg.search:
        table.add_column(key, justify="right")
    table.add_column("baseline")
    for t in top:
        values = trial_values(cfg, t.params, t.user_attrs.get(OVERRIDES))
        table.add_row(
            str(t.number),
            f"{t.value:.4g}",
            *[_fmt(values.get(k)) for k in cfg.search],
            t.user_attrs.get(BASELINE, ""),
        )
    console.print(table)
    if summary.test_metrics:
        tests = Table(title="test split (evaluated once, after selection on validation)")
        for column in ("configuration", "trial", cfg.objective, "test_loss"):
            tests.add_column(column, justify="right")
        with_acc = any("test_accuracy" in m for m in summary.test_metrics.values())
        if with_acc:
            tests.add_column("test_accuracy", justify="right")
        if cfg.study.repeats:
            tests.add_column(f"test_loss over {cfg.study.repeats} other seeds", justify="right")
        for name, m in summary.test_metrics.items():
            row = [name, str(m["trial"]), f"{m[cfg.objective]:.4g}", f"{m['test_loss']:.4g}"]
            if with_acc:
                row.append(f"{m.get('test_accuracy', math.nan):.4g}")
            if cfg.study.repeats:
                diverged = m["test_loss_diverged"]
                row.append(
                    f"{m['test_loss_mean']:.4g} ± {m['test_loss_std']:.2g}"
                    + (f" ({diverged} diverged)" if diverged else "")
                )
            tests.add_row(*row)
        for name, m in summary.peers.items():  # a reference, not a trial of the study
            row = [LABELS[name], "-", f"{m[cfg.objective]:.4g}", f"{m['test_loss']:.4g}"]
            if with_acc:
                row.append(f"{m.get('test_accuracy', math.nan):.4g}")
            if cfg.study.repeats:
                row.append("")
            tests.add_row(*row, style="dim")
        console.print(tests)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)
