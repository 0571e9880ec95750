"""Figures. Each function takes data and returns a matplotlib Figure built without pyplot, so no
global figure state is kept and nothing needs closing; the Agg backend renders them to PNG."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pipeline.names import COMPLETE  # noqa: E402

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


def study_figures(study, params: Sequence[str], folder, importance_seed: int = 0) -> list[str]:
    """Optuna's own plots of a study, saved as PNGs in ``folder``; returns the files written.

    Parameter importances use fANOVA once at least 10 trials completed with every parameter
    (Optuna's default evaluator says little with few trials). A plot that cannot be drawn yet
    (too few trials) is left out.
    """
    import warnings
    from pathlib import Path

    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ov
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import TrialState

    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if set(params) <= set(t.params)
    ]
    plotters = {
        "optimization_history": lambda: ov.plot_optimization_history(study),
        "intermediate_values": lambda: ov.plot_intermediate_values(study),
        "parallel_coordinate": lambda: ov.plot_parallel_coordinate(study, params=list(params)),
        "slice": lambda: ov.plot_slice(study, params=list(params)),
    }
    if len(complete) >= 10 and len(params) >= 2:
        evaluator = FanovaImportanceEvaluator(seed=importance_seed)
        plotters["param_importances"] = lambda: ov.plot_param_importances(
            study, evaluator=evaluator, params=list(params)
        )
    if {"keep_prob", "weight_decay"} <= set(params):
        plotters["contour_keep_prob_weight_decay"] = lambda: ov.plot_contour(
            study, params=["keep_prob", "weight_decay"]
        )
    written = []
    for name, plot in plotters.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = plot()
        except (ValueError, ZeroDivisionError, RuntimeError):
            continue
        first = axes.flat[0] if hasattr(axes, "flat") else axes
        figure = first.get_figure()
        path = Path(folder) / f"{name}.png"
        with warnings.catch_warnings():  # "tight layout not applied" on crowded slice plots
            warnings.simplefilter("ignore")
            figure.savefig(path, dpi=DPI, bbox_inches="tight")
        plt.close(figure)
        written.append(str(path))
    return written


# ---------------------------------------------------------------------------- report figures
WIDE = (10.0, 3.4)


def curves_figure(curves, labels: dict[int, str], title: str = "") -> Figure:
    """Validation (solid) and training (dashed) loss per epoch of some trials, by label;
    ``curves`` is :func:`pipeline.analysis.curves`'s long frame."""
    fig = Figure(figsize=WIDE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    colours = matplotlib.colormaps["tab10"].colors
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
