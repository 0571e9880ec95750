"""Reports: ``reports/<study>/index.html`` with tables and figures that answer "which
regularisation, and how much?", the frames behind them as CSV and parquet, and the same folder
logged to the study's parent run. Several studies also get ``reports/<a>-vs-<b>/``.

Reads the MLflow store through :mod:`pipeline.analysis` only.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient

from pipeline.analysis import _effects as effects
from pipeline.analysis import _frames as analysis
from pipeline.analysis import _plots as plots
from pipeline.analysis._pareto import pareto
from pipeline.names import COMPLETE, FAILED, INTERRUPTED, NOISE_SE, PRUNED, REGULARISERS, short
from pipeline.tracking import tracking_uri

STYLE = """<style>
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } img { max-width: 100%; } .lead { font-size: 16px; }
</style>"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    return "" if value is None or value is pd.NA else str(value)


def folder_for(out: Path, *names: str) -> Path:
    """The folder under ``out`` for a study (or a comparison of several). Names come from a
    store, which may have been received from anyone: they are data, never a path, so every
    character but letters, digits, '_', '.' and '-' becomes '_' and no name starts with '.'."""
    safe = [re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "_" for name in names]
    return Path(out) / "-vs-".join(safe)


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p><i>nothing to show yet</i></p>"
    frame = frame.astype(object).where(frame.notna(), "")  # NaN, None and pd.NA as blanks
    return frame.to_html(
        index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0, escape=True
    )


class _Page:
    """An HTML page being written into a folder, with its figures and frames."""

    def __init__(self, folder: Path, title: str) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.parts = [
            f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title>{STYLE}<h1>{html.escape(title)}</h1>"
        ]

    def text(self, markup: str) -> None:
        self.parts.append(markup)

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def figure(self, name: str, fig: Any) -> None:
        """The figure as a PNG beside the page, and inside the page itself: MLflow's artifact
        preview shows an HTML file alone, without the files its links point to."""
        path = self.folder / f"{name}.png"
        fig.savefig(path)
        data = base64.b64encode(path.read_bytes()).decode()
        self.parts.append(f"<img src='data:image/png;base64,{data}' alt='{html.escape(name)}'>")

    def frame(self, name: str, frame: pd.DataFrame, show: pd.DataFrame | None = None) -> None:
        """Show a table and keep the whole frame as CSV and parquet beside the page."""
        frame.to_csv(self.folder / f"{name}.csv", index=False)
        _parquet_safe(frame).to_parquet(self.folder / f"{name}.parquet", index=False)
        self.parts.append(_table(frame if show is None else show))

    def write(self) -> Path:
        path = self.folder / "index.html"
        path.write_text("\n".join(self.parts))
        return path


def _parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Tuples (e.g. hidden layer sizes) as text, so that every column has one parquet type."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(lambda v: None if v is None else str(v))
    return frame


def study_report(
    study: str, uri: str | None = None, out: Path = Path("reports"), log_to_mlflow: bool = True
) -> Path:
    """Write ``out/<study>/`` and return the page's path."""
    info = analysis.study_info(study, uri)
    frame = analysis.runs(study, uri)
    objective, direction = analysis.objective_of(info)
    params = analysis.searched(info)
    log_params = analysis.log_scale_params(info)
    page = _Page(folder_for(out, study), f"Study {study}")
    description = analysis.description(info)
    page.text(
        f"<p>{html.escape(str(description))}</p><p>data set <b>{info['tags'].get('data')}"
        f"</b>, {len(frame)} trials, objective <b>{objective}</b> ({direction}) on the "
        "validation split; the test split was evaluated once, after selection.</p>"
    )
    if frame.empty:
        page.text("<p>No trials yet.</p>")
        return page.write()

    board = effects.leaderboard(frame, objective, direction, n=10)
    versus = effects.best_against_baselines(frame, objective, direction)
    importances = effects.importances(frame, params, objective, log_params)
    page.heading("The answer at a glance")
    said = analysis.answer(info)
    if said:  # the sweep's own answer in words, with its uncertainty
        page.text("".join(f"<p class='lead'>{html.escape(line)}</p>" for line in said))
    page.text(_headline(board, versus, params, objective, importances))
    _pareto_section(page, frame, params)
    _data_section(page, info, uri)
    _choice_section(page, study, uri)
    _ablation_section(page, info, objective)
    _comparison_sections(page, info, board, versus, params, objective)
    _curves_section(page, study, uri, versus)
    _seeds_section(page, study, uri, info)
    _ensemble_section(page, frame, study, uri)
    _effects_sections(page, frame, params, objective, log_params, importances)

    _parquet_safe(frame).to_parquet(page.folder / "runs.parquet", index=False)
    frame.to_csv(page.folder / "runs.csv", index=False)
    path = page.write()
    if log_to_mlflow:
        MlflowClient(tracking_uri(uri)).log_artifacts(info["run_id"], str(page.folder), "report")
    return path


def _pareto_section(page: _Page, frame: pd.DataFrame, params: list[str]) -> None:
    """A study of several objectives: its front as a table and a figure."""
    objectives = frame.attrs.get("objectives", {})
    if len(objectives) < 2:
        return
    front = pareto(frame)
    said = " and ".join(f"{name} ({way})" for name, way in objectives.items())
    page.heading("The Pareto front")
    page.text(
        f"<p>The study optimised {html.escape(said)} at once. A trial is on the front when no "
        f"other is at least as good on every objective and better on one: {len(front)} of "
        f"{int((frame['state'] == COMPLETE).sum())} complete trials (their runs are tagged "
        "pareto = true). Baselines are marked in red. These are values of one network each "
        "(the study's seed); the choice below re-runs the front's best over other seeds.</p>"
    )
    complete = frame[frame["state"] == COMPLETE]
    figure = plots.pareto_figure(
        complete[list(objectives)].to_numpy(dtype=float),
        list(objectives.values()),
        list(objectives),
        [b if isinstance(b, str) else None for b in complete["baseline"].tolist()],
    )
    if figure is not None:
        page.figure("pareto_front", figure)
    columns = ["trial", *objectives, *[p for p in params if p in front], "baseline"]
    page.frame("pareto", front[columns])


def _data_section(page: _Page, info: dict[str, Any], uri: str | None) -> None:
    """A table's columns: each one's kind and what the preprocessing made of it."""
    table = analysis.columns(info, uri)
    if len(table):
        page.heading("The table's columns and their preprocessing")
        page.text(
            "<p>Numbers: missing values imputed by the median (with a column saying which "
            "were missing), then standardised. Categories: one-hot, a missing value its own "
            "category, a category unseen in training all zeros, rare ones pooled. Both are "
            "fitted on the training rows of each split only (each fold's; all non-test rows "
            "for the delivered model), and ship inside the delivered model. Identifiers, "
            "dates, free text, constant and empty columns are dropped; the sweep file's "
            "<code>categorical</code> and <code>drop</code> lists change that.</p>"
        )
        page.frame("columns", table)


def _choice_section(page: _Page, study: str, uri: str | None) -> None:
    choice = analysis.reruns(study, uri)
    if len(choice):
        page.heading("The choice: the top configurations and the baselines over other seeds")
        page.text(
            "<p>After the budget, the top configurations of the search and each baseline were "
            "trained again with the same other seeds; the choice was made on their validation "
            "means. Test metrics exist only for the chosen configuration and the baselines, "
            "each network tested once: mean and standard deviation over the seeds.</p>"
        )
        page.frame("choice", choice)


def _ablation_section(page: _Page, info: dict[str, Any], objective: str) -> None:
    table = analysis.ablation(info)
    if len(table):
        page.heading("Each regulariser of the pick switched off")
        page.text(
            "<p>The chosen configuration trained again with one regulariser switched off (its "
            "'off' value), everything else kept, on the same seeds (and folds): the relative "
            f"change of {objective} on validation and of the test loss, paired seed by seed, "
            "mean and standard error. A regulariser whose removal makes validation worse by "
            "more than two standard errors helps; better, hurts; else no effect within "
            "noise. The answer's words come from this table.</p>"
        )
        page.frame("ablation", table)


def _comparison_sections(
    page: _Page,
    info: dict[str, Any],
    board: pd.DataFrame,
    versus: pd.DataFrame,
    params: list[str],
    objective: str,
) -> None:
    """The best configuration against the baselines and the peer, and the leaderboard."""
    peers = analysis.peers(info)  # scikit-learn's MLP: a reference row, not a baseline
    page.heading("Best configuration against the baselines (validation, and test once)")
    page.frame("best_vs_baselines", versus)
    if len(peers):
        page.text(
            "<p>A peer for reference, not a baseline of the study: scikit-learn's MLP as a "
            "user would run it, its L2 strength alpha chosen by GridSearchCV on the study's "
            "folds (or its validation split) and refitted on training + validation; with the "
            "best configuration's hidden sizes and with its own default (100 units), and as "
            "it comes.</p>"
        )
        shown = ["configuration", "alpha", objective, "test_loss", "test_accuracy"]
        page.frame("peers", peers, peers[[c for c in shown if c in peers.columns]])
    page.heading("Leaderboard (complete trials by the objective)")
    shown = ["trial", objective, *params, "gen_gap", "stopped_epoch", "baseline"]
    page.frame("leaderboard", board, board[[c for c in shown if c in board.columns]])


def _curves_section(page: _Page, study: str, uri: str | None, versus: pd.DataFrame) -> None:
    labels = {
        int(t): str(name) for t, name in zip(versus["trial"], versus["configuration"], strict=True)
    }
    if labels:
        curves = analysis.curves(
            study, uri, metrics=("train_loss", "val_loss"), trials=list(labels)
        )
        page.heading("Learning curves: best and baselines")
        page.figure("learning_curves", plots.curves_figure(curves, labels))
        curves.to_csv(page.folder / "curves.csv", index=False)
        curves.to_parquet(page.folder / "curves.parquet", index=False)


def _seeds_section(page: _Page, study: str, uri: str | None, info: dict[str, Any]) -> None:
    repeated = analysis.repeats(study, uri, info)
    if len(repeated):
        seeds = repeated["repeat"].nunique()
        page.heading(f"Over {seeds} other seeds: test loss against the unregularised network")
        page.text(
            f"<p>The best configuration and each baseline trained again on the same {seeds} "
            "seeds (initial weights and noise) and tested once each. The verdict compares "
            f"them seed by seed with the unregularised network: beyond {NOISE_SE:g} "
            "standard errors of the paired difference it helps or hurts, else it has no "
            "effect within noise.</p>"
        )
        page.frame("seeds", effects.against_reference(repeated))


def _ensemble_section(page: _Page, frame: pd.DataFrame, study: str, uri: str | None) -> None:
    view = analysis.ensemble_view(frame, study, uri)
    if len(view):
        page.heading("The ensemble view of dropout: Monte-Carlo average against weight scaling")
        by_t = view.groupby("T")["ratio"].agg(
            trials="count", median_ratio="median", share_mc_better=lambda r: (r < 1).mean()
        )
        page.text(
            "<p>At test time dropout scales the weights instead of averaging the ensemble of "
            "thinned networks it trained (the chapter, section 4). For every trial with "
            "figures (the best, the baselines, any drawn on demand) that drops units or "
            "weights: validation loss of the average of T stochastic passes over that of the "
            "one weight-scaled pass.</p>"
        )
        page.figure("ensemble", plots.ensemble_figure(view))
        page.frame("ensemble_by_T", by_t.reset_index())


def _effects_sections(
    page: _Page,
    frame: pd.DataFrame,
    params: list[str],
    objective: str,
    log_params: tuple[str, ...],
    importances: pd.DataFrame,
) -> None:
    """Each hyperparameter's effect and importance, each regulariser's, and the trials that
    did not complete."""
    page.heading("Effect of each hyperparameter on the objective")
    page.figure("effects", plots.effects_figure(frame, params, objective, log_params))
    page.frame("marginal_effects", effects.marginal_effects(frame, params, objective, log_params))

    page.heading("Parameter importances")
    if len(importances):
        page.figure("importances", plots.importance_figure(importances))
    page.frame("importances", importances)

    regs = [p for p in params if p in REGULARISERS]
    page.heading("What each regulariser does: generalisation gap, weight norm, sparsity")
    if regs:
        page.figure("gap_vs_strength", plots.gap_figure(frame, regs, log_params))
    page.frame("regulariser_effects", effects.regulariser_effects(frame, regs, log_params))

    page.heading("Pruned and failed trials")
    page.frame("pruning", effects.pruning_summary(frame))
    failed = frame[frame["state"].astype(str).isin([FAILED, INTERRUPTED])]
    if len(failed):
        page.frame("failures", failed[["trial", "state", "reason"]])


def _headline(
    board: pd.DataFrame,
    versus: pd.DataFrame,
    params: list[str],
    objective: str,
    importances: pd.DataFrame,
) -> str:
    if board.empty:
        return "<p class='lead'>No trial completed yet.</p>"
    best = board.iloc[0]
    settings = ", ".join(f"{p} = {_fmt(best[p])}" for p in params if p in best.index)
    lines = [
        f"<p class='lead'>Best of the search: trial {int(best['trial'])} with {settings}: "
        f"{objective} {_fmt(best[objective])}."
    ]
    if "test_loss" in versus.columns:
        tests = {
            row["configuration"]: row["test_loss"]
            for _, row in versus.iterrows()
            if pd.notna(row.get("test_loss"))
        }
        if tests:
            parts = [f"{name} {_fmt(value)}" for name, value in tests.items()]
            lines.append(f"Test loss (evaluated once): {'; '.join(parts)}.")
    if len(importances):
        shares = [
            f"{row.param} {row.importance:.0%}"
            for row in importances.itertuples()
            if row.importance >= 0.05
        ]
        if shares:
            lines.append(f"What mattered most for {objective}: {', '.join(shares)}.")
    return " ".join(lines) + "</p>"


def comparison_report(
    studies: list[str], uri: str | None = None, out: Path = Path("reports")
) -> Path:
    """Several studies side by side (e.g. two data sets, or TPE against random search)."""
    page = _Page(folder_for(out, *studies), "Comparison: " + " vs ".join(studies))
    rows, importances, progress = [], [], {}
    for study in studies:
        info = analysis.study_info(study, uri)
        frame = analysis.runs(study, uri)
        objective, direction = analysis.objective_of(info)
        rows.append(_study_row(study, info, frame, objective, direction))
        if len(frame):
            progress[study] = effects.best_so_far(frame, objective, direction)
            params, log_params = analysis.searched(info), analysis.log_scale_params(info)
            imp = effects.importances(frame, params, objective, log_params)
            importances.append(imp.assign(study=study))
    page.heading("Studies")
    page.frame("studies", pd.DataFrame(rows))
    table = chapter_table(studies, uri)
    if len(table):
        page.heading("The chapter's table, measured")
        page.text(
            "<p>Each row a study: one technique tuned at the same budget on the same network, "
            "training and initial weights; its best configuration (the best the search "
            "proposed, where a baseline was better on validation) then trained again on the "
            "study's other seeds and tested, seed by seed against the unregularised network "
            f"(verdict beyond {NOISE_SE:g} standard errors of the paired "
            "difference).</p>"
        )
        page.frame("chapter_table", table)
    if progress:
        page.heading("Best objective so far, by trial")
        page.figure("best_so_far", plots.best_so_far_figure(progress))
    page.heading("Parameter importances by study")
    if importances:
        table = (
            pd.concat(importances)
            .pivot_table(index="param", columns="study", values="importance")
            .reset_index()
        )
        page.frame("importances", table)
    return page.write()


def _study_row(
    study: str, info: dict[str, Any], frame: pd.DataFrame, objective: str, direction: str
) -> dict[str, Any]:
    """One study's row of the comparison, its metrics named as on the parent run in MLflow."""
    board = effects.leaderboard(frame, objective, direction, n=1)
    states = frame["state"].astype(str).value_counts() if len(frame) else pd.Series()
    metrics = info["metrics"]
    return {
        "study": study,
        "data": info["tags"].get("data"),
        "sampler": info["tags"].get("sampler"),
        "pruner": info["tags"].get("pruner"),
        "objective": objective,
        "trials": len(frame),
        COMPLETE: int(states.get(COMPLETE, 0)),
        PRUNED: int(states.get(PRUNED, 0)),
        FAILED: int(states.get(FAILED, 0)),
        f"best.{objective}": board[objective].iloc[0] if len(board) else math.nan,
        "best.test_loss": metrics.get("best.test_loss", math.nan),
        "unregularised.test_loss": metrics.get("unregularised.test_loss", math.nan),
        "wall_time": metrics.get("wall_time", math.nan),
    }


def chapter_table(studies: list[str], uri: str | None = None) -> pd.DataFrame:
    """One row per study with repeats: the technique (its description), the best
    configuration, its test loss over the repeat seeds against the unregularised network's
    on the same seeds, and the verdict. Empty when no study has repeats."""
    rows = []
    for study in studies:
        info = analysis.study_info(study, uri)
        versus = effects.against_reference(analysis.repeats(study, uri, info))
        if versus.empty or "best" not in set(versus["configuration"]):
            continue
        by_name = versus.set_index("configuration")
        # the technique's own best: the best trial, or the search's best when a baseline won
        row_name = "tuned" if "tuned" in by_name.index else "best"
        best, reference = by_name.loc[row_name], by_name.loc["unregularised"]
        frame = analysis.runs(study, uri)
        objective, direction = analysis.objective_of(info)
        searched_trials = frame[frame["baseline"].isna()]
        top = effects.leaderboard(
            searched_trials if row_name == "tuned" else frame, objective, direction, n=1
        )
        settings = ", ".join(
            f"{p} = {short(top[p].iloc[0])}" for p in analysis.searched(info) if p in top
        )
        rows.append(
            {
                "technique": analysis.description(info).split(":")[0] or study,
                "study": study,
                "best configuration": settings,
                "test_loss (mean ± std)": f"{best.test_loss_mean:.4g} ± {best.test_loss_std:.2g}",
                "unregularised": f"{reference.test_loss_mean:.4g} ± {reference.test_loss_std:.2g}",
                "relative": round(float(best.relative_to_unregularised), 3),
                "seeds": int(best.seeds),
                "verdict": best.verdict,
                "a baseline was best on validation": row_name == "tuned",
                "failed trials": int((frame["state"].astype(str) == FAILED).sum()),
            }
        )
    return pd.DataFrame(rows)


def write_reports(
    studies: list[str], uri: str | None = None, out: Path = Path("reports")
) -> list[Path]:
    """A report per study, and a comparison when there are several; returns the pages."""
    pages = [study_report(s, uri, out) for s in studies]
    if len(studies) > 1:
        pages.append(comparison_report(studies, uri, out))
    return pages
