"""What a sweep shows on the console: live progress while the workers run, and the summary
tables at the end (best trials, and the test split evaluated once)."""

from __future__ import annotations

import math
import threading
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

from pipeline.config import SweepConfig, trial_values
from pipeline.core import Dataset
from pipeline.names import (
    BASELINE,
    COMPLETE,
    FAIL_REASON,
    FAILED,
    INTERRUPTED_ATTR,
    OVERRIDES,
    PRUNED,
)
from pipeline.results import SweepSummary, value_of
from pipeline.search import _study as st
from pipeline.search._delivery import HOW
from pipeline.search._peer import LABELS
from pipeline.search._tradeoff import front_rows


def show_progress(
    cfg: SweepConfig, study: optuna.Study, done: threading.Event, console: Console
) -> None:
    """The study's progress, refreshed every second until ``done`` is set."""
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
            alive = not done.is_set()
            trials = study.get_trials(deepcopy=False)
            finished = [t for t in trials if t.state.is_finished() and st.counts_toward_budget(t)]
            counts = st.state_counts(trials)
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            best = st.best_trial(study) if complete else None
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
                        value = "-" if not t.values else "/".join(f"{v:.4g}" for v in t.values)
                        console.print(
                            f"trial {t.number:4d} {t.state.name.lower():8s} "
                            f"{cfg.objective} {value:>8s}"
                            f"  [{len(seen)}/{total}] {best_text}",
                            highlight=False,
                            soft_wrap=True,
                        )
            if not alive:
                return
            # not a sleep: the workers' phase ends when they do. Nor the thread's join(), which
            # Ctrl-C can leave believing a running thread stopped (Python 3.11)
            done.wait(timeout=1.0)


def _best_text(best: FrozenTrial | None, objective: str) -> str:
    """The best value so far and its parameters, for the progress display."""
    if best is None:
        return f"best {objective} -"
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
    return (
        f"best {objective} {value_of(best):.4g} (#{best.number}{': ' + params if params else ''})"
    )


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
        + (
            "; the end: " + ", ".join(f"{k} {v:.1f} s" for k, v in summary.end_seconds.items())
            if summary.end_seconds
            else ""
        )
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
    else:  # each on a line of its own, never wrapped: a link to click
        for line in summary.hints:
            console.print(line, highlight=False, soft_wrap=True)
    if not complete:
        return
    console.print(
        _front_table(cfg, study, len(complete)) if cfg.multi else _top_table(cfg, complete)
    )
    if summary.selection:
        console.print(_selection_table(cfg, summary))
    if summary.test_metrics:
        console.print(_test_table(cfg, summary))
    if summary.ablation:
        console.print(_ablation_table(cfg, summary))
    for line in summary.answer:  # plain text: its "[study] repeats" is not markup
        console.print(line, highlight=False, markup=False)


def _top_table(cfg: SweepConfig, complete: list[FrozenTrial]) -> Table:
    """The five best trials of the search by the objective."""
    top = sorted(complete, key=value_of, reverse=cfg.direction == "maximize")[:5]
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
            f"{value_of(t):.4g}",
            *[_fmt(values.get(k)) for k in cfg.search],
            t.user_attrs.get(BASELINE, ""),
        )
    return table


def _selection_table(cfg: SweepConfig, summary: SweepSummary) -> Table:
    """The re-run candidates on validation only: what the choice was made on."""
    rule = "one-standard-error rule" if cfg.study.select == "one_se" else "best mean"
    trade = "weight_norm"
    if cfg.multi:
        trade = cfg.objective_keys[1]
        rule = f"best mean {trade} within one standard error of the best"
    table = Table(
        title=f"the choice: {cfg.objective} over {cfg.study.repeats} other seeds ({rule})"
    )
    for column in ("trial", "baseline", "in the search", "mean ± se", trade, "chosen"):
        table.add_column(column, justify="right")
    for row in sorted(summary.selection, key=lambda row: row["rank"]):
        diverged = f" ({row['diverged']} diverged)" if row["diverged"] else ""
        table.add_row(
            str(row["trial"]),
            row["baseline"],
            f"{row['search_value']:.4g}",
            f"{row['mean']:.4g} ± {row['se']:.2g}{diverged}",
            f"{row[trade]:.3g}",
            "✓" if row["chosen"] else "",
        )
    return table


FRONT_ROWS = 15  # the front's rows printed; the report and the MLflow view hold them all


def _front_table(cfg: SweepConfig, study: optuna.Study, complete: int) -> Table:
    """A study of several objectives: its Pareto front, by the first objective."""
    rows = front_rows(cfg, study)
    shown = "" if len(rows) <= FRONT_ROWS else f" (the {FRONT_ROWS} best on the first shown)"
    table = Table(title=f"the Pareto front: {len(rows)} of {complete} complete trials{shown}")
    keys = [*cfg.objective_keys, *cfg.search]
    for column in ("trial", *keys, "baseline"):
        table.add_column(column, justify="right")
    for row in rows[:FRONT_ROWS]:
        table.add_row(str(row["trial"]), *(_fmt(row.get(k)) for k in keys), row["baseline"])
    return table


def _test_table(cfg: SweepConfig, summary: SweepSummary) -> Table:
    """The chosen configuration, the baselines and the peer: validation and test metrics
    side by side (both validation metrics for a classifier, so that a user sees when they
    disagree), means ± standard deviations over the seeds with re-runs."""
    spread = f", mean ± sd over {cfg.study.repeats} seeds" if cfg.study.repeats else ""
    table = Table(title=f"test split (each network evaluated once, after selection{spread})")
    keys = ["final_val_loss", "test_loss"]
    if any("test_accuracy" in m for m in summary.test_metrics.values()):
        keys = ["final_val_loss", "final_val_accuracy", "test_loss", "test_accuracy"]
    for column in ("configuration", "trial", *keys):
        table.add_column(column, justify="right")

    def cell(m: dict[str, Any], key: str) -> str:
        value = m.get(key, math.nan)
        if f"{key}_std" not in m:
            return f"{value:.4g}"
        return f"{value:.4g} ± {m[f'{key}_std']:.2g}"

    if summary.delivered:  # the model a user takes away, first: trained once, tested once
        d = summary.delivered
        label = f"delivered ({HOW[d['how']]}, {d['epochs']} epochs)"
        tests = [cell(d, k) if k.startswith("test_") else "-" for k in keys]
        table.add_row(label, str(d["trial"]), *tests, style="bold")
    for name, m in summary.test_metrics.items():
        row = [name, str(m["trial"]), *(cell(m, k) for k in keys)]
        if m.get("test_loss_diverged"):
            row[0] += f" ({m['test_loss_diverged']} diverged)"
        table.add_row(*row)
    for name, m in summary.peers.items():  # a reference, not a trial of the study
        table.add_row(LABELS[name], "-", *(cell(m, k) for k in keys), style="dim")
    return table


def _ablation_table(cfg: SweepConfig, summary: SweepSummary) -> Table:
    """Each regulariser of the pick switched off: the paired changes and the verdict."""
    table = Table(title="each regulariser of the pick switched off (paired over seeds)")
    for column in ("regulariser", "chosen", "off", f"{cfg.objective} change", "test_loss change"):
        table.add_column(column, justify="right")
    table.add_column("verdict")
    for switched in summary.ablation:
        row = switched.row(cfg.objective)

        def change(key: str, row: dict[str, Any] = row) -> str:
            se = row[f"{key} se"]
            return f"{row[key]:+.1%}" + (f" ± {se:.1%}" if math.isfinite(se) else "")

        table.add_row(
            switched.key,
            _fmt(switched.value),
            _fmt(switched.off),
            change(f"{cfg.objective} change"),
            change("test_loss change"),
            switched.verdict,
        )
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def describe(cfg: SweepConfig, dataset: Dataset, storage: str | None, tracking: str | None) -> str:
    """What a sweep of ``cfg`` would do, resolved, for ``python -m pipeline check``."""
    from pipeline.config import mask_credentials
    from pipeline.search._study import baselines, storage_url
    from pipeline.tracking import tracking_uri

    s = cfg.study
    sizes = ", ".join(f"{n} {split}" for split, n in dataset.sizes().items())
    objectives = ", ".join(
        f"{k} ({d})" for k, d in zip(cfg.objective_keys, cfg.directions, strict=True)
    )
    rule: str = s.select
    if cfg.multi:
        rule = f"the best {cfg.objective_keys[1]} within one standard error of the best"
    lines = [
        f"{cfg.source}: valid",
        f"study     {s.name}: {s.n_trials} trials, {s.n_jobs} worker(s), "
        + (f"objectives {objectives}" if cfg.multi else f"objective {objectives}")
        + f", seed {s.seed}"
        + (f", {s.folds} folds" if s.folds else "")
        + (
            f", re-runs over {s.repeats} seeds of the top {s.top_k}"
            + (" of the Pareto front" if cfg.multi else "")
            + f" ({rule})"
            if s.repeats
            else ""
        )
        + f"; delivers {HOW[s.deliver]}",
        f"data      {cfg.data.name} ({dataset.task}, {dataset.n_features} features): {sizes}",
    ]
    if dataset.table is not None and dataset.table.source and dataset.preprocessing:
        lines += [f"column    {line}" for line in dataset.preprocessing.plan.lines()]
        lines += [f"data      {note}" for note in dataset.table.notes]
    for key, p in cfg.search.items():
        if p.type == "categorical":
            space = f"one of {list(p.choices)}"
        else:
            space = f"{p.type} {p.low}..{p.high}" + (" (log)" if p.log else "")
            space += f" step {p.step}" if p.step not in (None, 1) else ""
        lines.append(f"search    {key}: {space}")
    lines += [f"fixed     {k} = {v!r}" for k, v in cfg.fixed.items()]
    for name, overrides in baselines(cfg).items():
        settings = ", ".join(f"{k} = {v!r}" for k, v in overrides.items()) or "as fixed"
        lines.append(f"baseline  {name}: {settings}")
    lines.append(f"sampler   {cfg.sampler.name} {cfg.sampler.options or ''}".rstrip())
    lines += [f"constraint {c}" for c in cfg.constraints]
    pruner = f"{cfg.pruner.name} {cfg.pruner.options or ''}".rstrip()
    lines.append(f"pruner    {'none (several objectives)' if cfg.multi else pruner}")
    lines.append(f"storage   {mask_credentials(storage_url(cfg, storage))}")
    uri = tracking_uri(tracking or cfg.tracking.uri) if cfg.tracking.enabled else "off"
    lines.append(f"tracking  {mask_credentials(uri)}")
    lines.append("nothing was written")
    return "\n".join(lines)
