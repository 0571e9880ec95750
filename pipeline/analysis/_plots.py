"""Figures. Each function takes data and returns a matplotlib Figure built without pyplot, so no
global figure state is kept and nothing needs closing; the Agg backend renders them to PNG."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from pipeline.core import readable_part
from pipeline.names import COMPLETE

SMALL = (5.0, 3.2)
DPI = 110  # legible at the size MLflow's artifact preview shows a PNG


def _figure() -> Figure:
    # fixed margins: a layout engine would cost more than the drawing (figures are per trial)
    fig = Figure(figsize=SMALL, dpi=DPI)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.15, top=0.9)
    return fig


def learning_curves(
    history: dict[str, list[float]], best_epoch: int | None = None, title: str = ""
) -> Figure:
    """Training and validation loss per epoch, the best epoch marked."""
    fig = _figure()
    ax = fig.add_subplot()
    # a few hundred points draw the same picture as thousands, in half the time
    step = max(1, len(history.get("epoch", [])) // 400)
    epochs = history.get("epoch", [])[::step]
    ax.plot(epochs, history.get("train_loss", [])[::step], label="train (with dropout)", lw=1.2)
    if "val_loss" in history:
        ax.plot(epochs, history["val_loss"][::step], label="validation", lw=1.2)
    if best_epoch:
        ax.axvline(best_epoch, color="grey", ls=":", lw=1, label=f"best epoch {best_epoch}")
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    _clip_y(ax, [history.get("train_loss", []), history.get("val_loss", [])])
    ax.legend(fontsize=8, loc="upper right")  # "best" would search the data: slow
    return fig


def _clip_y(ax, series: Sequence[Sequence[float]]) -> None:
    """Keep the first epochs' large losses from flattening the rest of the curve."""
    values = np.concatenate([np.asarray(s, float) for s in series if len(s)] or [np.zeros(1)])
    values = values[np.isfinite(values)]
    if values.size:
        top = np.percentile(values, 98) * 1.1
        ax.set_ylim(max(0.0, values.min() * 0.9), top if top > values.min() else None)


def weight_histogram(weights: Sequence[np.ndarray], title: str = "") -> Figure:
    """Distribution of all weights; exact zeros (what L1's proximal step makes) are counted."""
    fig = _figure()
    ax = fig.add_subplot()
    w = np.concatenate([np.ravel(W) for W in weights])
    counts, edges = np.histogram(w, bins=60)
    ax.stairs(counts, edges, fill=True, alpha=0.8)
    zeros = float((w == 0).mean())
    ax.set(xlabel="weight", ylabel="count", title=title or "weights")
    ax.text(
        0.02,
        0.92,
        f"{zeros:.0%} exactly zero\n||W|| = {np.linalg.norm(w):.3g}",
        transform=ax.transAxes,
        fontsize=8,
        va="top",
    )
    return fig


def activation_histogram(
    clean: np.ndarray, dropped: np.ndarray, keep_prob: float, title: str = ""
) -> Figure:
    """Hidden activations without and with inverted dropout: the mean is preserved although a
    share ``1 - keep_prob`` of the units is zeroed (the chapter's figure)."""
    fig = _figure()
    ax = fig.add_subplot()
    top = max(float(np.percentile(dropped, 99.5)), 1e-9)
    bins = np.linspace(0 if clean.min() >= 0 else -top, top, 60)
    for data, label in ((clean, "no dropout"), (dropped, f"dropout, keep_prob={keep_prob:.2f}")):
        counts, edges = np.histogram(np.clip(data, bins[0], bins[-1]), bins=bins, density=True)
        ax.stairs(counts, edges, label=f"{label}: mean {data.mean():.3f}", alpha=0.7)
    ax.set(
        xlabel="activation (last hidden layer)",
        ylabel="density",
        title=title or "hidden activations",
    )
    ax.legend(fontsize=8, loc="upper right")  # "best" would search the data: slow
    return fig


STUDY_FIGURES = (
    "optimization_history",
    "intermediate_values",
    "parallel_coordinate",
    "slice",
    "param_importances",
    "contour_keep_prob_weight_decay",
    "pareto_front",
)


def study_figures(
    study,
    params: Sequence[str],
    folder,
    objective: str = "value",
    importance_seed: int = 0,
    only: Sequence[str] = STUDY_FIGURES,
) -> list[str]:
    """The study's plots (those of ``only``), saved as PNGs in ``folder``; returns the files
    written. Optuna's own for the optimisation history, slices, importances and the keep_prob
    x weight_decay contour (named with ``objective``); ours for parallel coordinates and
    intermediate values, whose Optuna versions overlap their axis labels and list every trial
    in a legend.

    Parameter importances use fANOVA once at least 10 trials completed with every parameter
    (Optuna's default evaluator says little with few trials). A plot that cannot be drawn yet
    (too few trials) is left out.
    """
    import sys
    import warnings
    from pathlib import Path

    import matplotlib.pyplot as plt

    plotters = _study_plotters(study, params, objective, importance_seed)
    written = []
    for name, plot in plotters.items():
        if name not in only:
            continue
        try:
            with warnings.catch_warnings():  # "tight layout not applied" on crowded slices
                warnings.simplefilter("ignore")
                drawn = plot()
                if drawn is None:
                    continue
                figure: Any
                if isinstance(drawn, Figure):
                    figure = drawn
                else:  # Optuna's: axes on a pyplot figure
                    figure = (drawn.flat[0] if hasattr(drawn, "flat") else drawn).get_figure()
                path = Path(folder) / f"{name}.png"
                figure.savefig(path, dpi=DPI, bbox_inches="tight")
        except (ValueError, ZeroDivisionError, RuntimeError):  # too few trials for it yet
            continue
        except Exception as err:  # a plot is not worth a sweep: say so, draw the others
            print(f"warning: the study plot {name} was not drawn: {err!r}", file=sys.stderr)
            continue
        finally:
            plt.close("all")
        written.append(str(path))
    return written


def _study_plotters(
    study: Any, params: Sequence[str], objective: str, importance_seed: int
) -> dict[str, Any]:
    """Each study plot that can be drawn, by name: a function that draws it."""
    import optuna.visualization.matplotlib as ov
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import TrialState

    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if set(params) <= set(t.params)
    ]
    named: dict[str, Any] = {"target_name": objective}
    several = len(study.directions) > 1
    if several:  # Optuna's plots show one objective: the first, the one chosen on
        named["target"] = lambda t: t.values[0]
    plotters = {
        "optimization_history": lambda: ov.plot_optimization_history(study, **named),
        "intermediate_values": lambda: intermediate_values(study, objective),
        "parallel_coordinate": lambda: parallel_coordinates(study, params, objective),
        "slice": lambda: ov.plot_slice(study, params=list(params), **named),
    }
    if len(complete) >= 10 and len(params) >= 2:
        evaluator = FanovaImportanceEvaluator(seed=importance_seed)
        plotters["param_importances"] = lambda: ov.plot_param_importances(
            study, evaluator=evaluator, params=list(params), **named
        )
    if several:
        plotters["pareto_front"] = lambda: pareto_front(study)
    if {"keep_prob", "weight_decay"} <= set(params):
        plotters["contour_keep_prob_weight_decay"] = lambda: ov.plot_contour(
            study, params=["keep_prob", "weight_decay"], **named
        )
    return plotters


def pareto_front(study: Any) -> Figure | None:
    """The Pareto front of an Optuna study of several objectives (see :func:`pareto_figure`)."""
    from optuna.trial import TrialState

    from pipeline.names import BASELINE

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return pareto_figure(
        np.array([t.values for t in trials], dtype=float),
        [d.name.lower() for d in study.directions],
        study.metric_names or [f"objective {i}" for i in range(len(study.directions))],
        [t.user_attrs.get(BASELINE) for t in trials],
    )


def pareto_figure(
    values: np.ndarray,
    directions: Sequence[str],
    names: Sequence[str],
    baselines: Sequence[str | None],
) -> Figure | None:
    """The first two objectives, one point per complete trial (a row of ``values``): the
    Pareto-optimal ones joined as a staircase, the others grey, each baseline named beside
    its point (``baselines``: a name or None per row)."""
    from pipeline.config import on_front

    if len(values) < 2:
        return None
    values = values[:, :2]
    front = np.array(on_front(values.tolist(), directions[:2]), dtype=bool)
    fig = Figure(figsize=(6.0, 4.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(values[~front, 0], values[~front, 1], s=14, color="0.6", label="dominated")
    shown = values[front][np.argsort(values[front][:, 0])]
    ax.plot(
        shown[:, 0],
        shown[:, 1],
        "o-",
        color="tab:blue",
        drawstyle="steps-pre",
        label="Pareto front",
    )
    for baseline, (x, y) in zip(baselines, values, strict=True):
        if baseline:
            ax.scatter([x], [y], marker="s", s=40, color="tab:red", zorder=3)
            ax.annotate(
                baseline,
                (x, y),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=8,
                color="tab:red",
            )
    if values[:, 1].min() >= 0 and values[:, 1].max() > 100:  # counts over decades
        ax.set_yscale("symlog", linthresh=10)
    ax.set_xlabel(f"{names[0]} ({directions[0]})")
    ax.set_ylabel(f"{names[1]} ({directions[1]})")
    ax.set_title(f"Pareto front: {int(front.sum())} of {len(values)} trials")
    ax.legend(loc="best", fontsize=8)
    return fig


def parallel_coordinates(study, params: Sequence[str], objective: str) -> Figure | None:
    """One line per complete trial across one vertical axis per hyperparameter, each scaled
    to its range (log where the search is), coloured by the objective, the best on top. Each
    axis is labelled once, below, with its range: nothing overlaps however many trials."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState

    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if set(params) <= set(t.params)
    ]
    if len(trials) < 2 or not params:
        return None
    columns, labels = [], []
    for name in params:
        dist = trials[-1].distributions[name]
        raw = [t.params[name] for t in trials]
        if isinstance(dist, CategoricalDistribution):
            choices = list(dist.choices)
            x = np.array([choices.index(v) for v in raw], dtype=float)
            lo, hi = 0.0, float(max(len(choices) - 1, 1))
            span = f"{{{', '.join(map(str, choices))}}}"
        else:
            log = isinstance(dist, FloatDistribution | IntDistribution) and dist.log
            x = np.log10(np.asarray(raw, dtype=float)) if log else np.asarray(raw, dtype=float)
            lo, hi = float(x.min()), float(x.max())
            span = f"{min(raw):.3g} - {max(raw):.3g}" + (" (log)" if log else "")
        columns.append((x - lo) / ((hi - lo) or 1.0))
        labels.append(f"{name}\n{span}")
    scaled = np.column_stack(columns)
    values = np.array([t.values[0] for t in trials])
    maximise = study.directions[0].name == "MAXIMIZE"
    order = np.argsort(values if maximise else -values)  # the best drawn last, on top
    fig = Figure(figsize=(max(6.0, 1.5 * len(params) + 1.5), 3.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis" if maximise else "viridis_r"]
    norm = matplotlib.colors.Normalize(values.min(), values.max())
    xs = np.arange(len(params))
    for i in order:
        ax.plot(xs, scaled[i], color=cmap(norm(values[i])), lw=1.0, alpha=0.7)
    for tick in range(len(params)):
        ax.axvline(tick, color="0.3", lw=0.8)
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_yticks([0, 1], ["low", "high"], fontsize=8)
    ax.set_xlim(-0.1, len(params) - 0.9)
    ax.set_title(f"{len(trials)} complete trials by {objective}", fontsize=10)
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax)
    bar.set_label(objective)
    return fig


def intermediate_values(study, objective: str) -> Figure | None:
    """The value each trial reported while it trained (what the pruner saw), complete trials
    in blue and pruned ones in orange, on a log scale where every value is positive."""
    from optuna.trial import TrialState

    colours = {TrialState.COMPLETE: "tab:blue", TrialState.PRUNED: "tab:orange"}
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    if not trials:
        return None
    fig = Figure(figsize=(6.0, 3.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    everything = []
    for t in trials:
        steps = np.array(sorted(t.intermediate_values))
        ys = np.array([t.intermediate_values[s] for s in steps], dtype=float)
        n = readable_part(ys)  # a diverging trial's curve stops where it diverged
        everything.append(ys[:n])
        ax.plot(steps[:n], ys[:n], color=colours.get(t.state, "0.6"), lw=0.8, alpha=0.6)
    for state, colour in colours.items():
        ax.plot([], [], color=colour, label=state.name.lower())
    finite = np.concatenate(everything)
    if len(finite) and (finite > 0).all():
        ax.set_yscale("log")  # limits within the bulk: a few diverging values set no scale
        low, high = np.percentile(finite, [0, 98])
        ax.set_ylim(low * 0.9, high * 1.5 if high > low else None)
    ax.set(xlabel="epoch", ylabel=f"reported {objective.removeprefix('final_')}")
    ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------------------- report figures
WIDE = (10.0, 3.4)


def curves_figure(curves, labels: dict[int, str], title: str = "") -> Figure:
    """Validation (solid) and training (dashed) loss per epoch of some trials, by label;
    ``curves`` is :func:`pipeline.analysis.curves`'s long frame."""
    fig = Figure(figsize=WIDE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    colours = matplotlib.colormaps["tab10"].colors  # type: ignore[attr-defined]
    for i, (trial, label) in enumerate(labels.items()):
        colour = colours[i % len(colours)]
        for metric, style in (("val_loss", "-"), ("train_loss", "--")):
            part = curves[(curves["trial"] == trial) & (curves["metric"] == metric)]
            if len(part):
                ax.plot(
                    part["epoch"],
                    part["value"],
                    style,
                    color=colour,
                    lw=1.3,
                    label=f"{label} ({'validation' if metric == 'val_loss' else 'train'})",
                )
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    _clip_y(ax, [curves["value"].to_numpy()])
    ax.legend(fontsize=7, ncol=2)
    return fig


def _panels(frame, params: Sequence[str]) -> tuple:
    """Complete trials, the parameters they have values for, and a figure with one panel
    (sharing the y axis) per parameter."""
    complete = frame[frame["state"] == COMPLETE]
    params = [p for p in params if p in complete.columns and complete[p].notna().any()]
    fig = Figure(figsize=(3.2 * max(len(params), 1), 3.2), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(len(params), 1), sharey=True))
    return complete, params, fig, axes


def effects_figure(
    frame, params: Sequence[str], objective: str, log_params: Sequence[str] = (), title: str = ""
) -> Figure:
    """The objective of every complete trial against each hyperparameter (one panel each),
    with the running median, so that both the trend and the spread show."""
    complete, params, fig, axes = _panels(frame, params)
    for ax, param in zip(axes, params, strict=False):
        data = complete[[param, objective]].dropna()
        x = data[param]
        if not np.issubdtype(np.asarray(x).dtype, np.number):  # categories at 0, 1, 2, ...
            names = sorted(x.astype(str).unique())
            x = x.astype(str).map({name: i for i, name in enumerate(names)})
            ax.set_xticks(range(len(names)), names)
        ax.scatter(x, data[objective], s=14, alpha=0.7)
        _log_axis(ax, np.asarray(x, float), param in log_params)
        order = np.argsort(np.asarray(x, float))
        window = max(3, len(order) // 6)
        if len(order) >= window:
            xs = np.asarray(x, float)[order]
            ys = data[objective].to_numpy()[order]
            medians = [
                np.median(ys[max(0, i - window // 2) : i + window // 2 + 1]) for i in range(len(ys))
            ]
            ax.plot(xs, medians, color="black", lw=1.2)
        ax.set(xlabel=param)
    axes[0].set_ylabel(objective)
    _clip_y(axes[0], [complete[objective].dropna().to_numpy()])
    if title:
        fig.suptitle(title)
    return fig


def _log_axis(ax, x: np.ndarray, log: bool) -> None:
    """A log axis for a log-scale parameter; symmetric-log when some values are 0 (the
    baselines' "off"), so that they still show, at the left."""
    if not log or not len(x):
        return
    positive = x[x > 0]
    if len(positive) == len(x):
        ax.set_xscale("log")
    elif len(positive):
        ax.set_xscale("symlog", linthresh=float(positive.min()))


def importance_figure(table, title: str = "") -> Figure:
    """Horizontal bars of parameter importances, largest on top."""
    fig = Figure(figsize=(5.5, 0.5 + 0.4 * max(len(table), 1)), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ordered = table.iloc[::-1]
    ax.barh(ordered["param"], ordered["importance"])
    ax.set(xlabel="share of the objective's variation explained", title=title)
    return fig


def gap_figure(
    frame, params: Sequence[str], log_params: Sequence[str] = (), title: str = ""
) -> Figure:
    """Generalisation gap (validation minus training loss) against each regulariser's
    strength, complete trials."""
    complete, params, fig, axes = _panels(frame, params)
    for ax, param in zip(axes, params, strict=False):
        data = complete[[param, "gen_gap"]].dropna()
        ax.scatter(data[param].astype(float), data["gen_gap"], s=14, alpha=0.7, color="tab:red")
        _log_axis(ax, data[param].to_numpy(float), param in log_params)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xlabel=param)
    axes[0].set_ylabel("generalisation gap")
    if title:
        fig.suptitle(title)
    return fig


def best_so_far_figure(series: dict, title: str = "") -> Figure:
    """Best objective so far against trial number, one line per study (for comparisons)."""
    fig = Figure(figsize=(6.5, 3.4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for name, table in series.items():
        ax.step(table["trial"], table["best_so_far"], where="post", label=name)
        ax.scatter(table["trial"], table["value"], s=8, alpha=0.3)
    ax.set(xlabel="trial", ylabel="objective (validation)", title=title)
    _clip_y(ax, [t["value"].to_numpy() for t in series.values()])
    ax.legend(fontsize=8, loc="upper right")  # "best" would search the data: slow
    return fig


def ensemble_figure(view, title: str = "") -> Figure:
    """The ensemble view of dropout: for each trial that drops units or weights, the
    validation loss of the average of T stochastic passes over that of the one
    weight-scaled pass, against T (below 1: the ensemble does better)."""
    fig = Figure(figsize=(6.0, 3.4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for _, part in view.groupby("trial"):
        ax.plot(part["T"], part["ratio"], color="tab:blue", lw=0.8, alpha=0.4)
    median = view.groupby("T")["ratio"].median()
    ax.plot(median.index, median.to_numpy(), color="black", lw=2, label="median over trials")
    ax.axhline(1.0, color="tab:red", lw=1, ls="--", label="weight scaling")
    ax.set_xscale("log")
    ax.set(xlabel="stochastic passes averaged (T)", ylabel="val loss: MC / weight-scaled")
    ax.set_title(title, fontsize=10)
    _clip_y(ax, [view["ratio"].to_numpy()])
    ax.legend(fontsize=8, loc="upper right")
    return fig
