"""A study of several objectives: its Pareto front, and what the choice from it costs.

The choice itself is made with the other re-run candidates (:mod:`pipeline.search._evaluation`):
of the configurations within one standard error of the best mean on the first objective, the
best on the second. Here that choice is said in words against the configuration best on the
first objective, paired seed by seed on validation (the other's networks are never tested).
"""

from __future__ import annotations

import math
from typing import Any

import optuna

from pipeline.config import OBJECTIVES, SweepConfig, pareto_trials
from pipeline.names import BASELINE, short
from pipeline.results import SweepSummary
from pipeline.search._evaluation import finite_mean, standard_error


def front_rows(cfg: SweepConfig, study: optuna.Study) -> list[dict[str, Any]]:
    """The front as rows: trial, each objective's value, baseline, params."""
    return [
        {"trial": t.number}
        | dict(zip(cfg.objective_keys, t.values, strict=True))
        | {"baseline": t.user_attrs.get(BASELINE, "")}
        | dict(t.params)
        for t in pareto_trials(study)
    ]


def tradeoff_sentence(cfg: SweepConfig, summary: SweepSummary) -> str:
    """What the choice trades, in the re-runs' means: against the candidate best on the first
    objective, and what the next cheaper candidate would cost on top (the first objective's
    change paired over the seeds, with its standard error)."""
    rows = [r for r in summary.selection if not r["baseline"]]
    chosen = next((r for r in summary.selection if r["chosen"]), None)
    if not cfg.multi or not rows or chosen is None:
        return ""
    second = cfg.objective_keys[1]
    top = min(rows, key=lambda r: r["rank"])
    what, total = OBJECTIVES[cfg.objectives[1]].label, _total_weights(summary)
    if top["trial"] == chosen["trial"]:
        line = (
            f"Trade-off: the most {_good(cfg)} candidate (trial {top['trial']}, {what} "
            f"{_amount(second, chosen[second], total)}) is the choice: none within one "
            f"standard error of it has fewer {what}."
        )
    else:
        line = (
            f"Trade-off: trial {chosen['trial']} has {what} "
            f"{_amount(second, chosen[second], total)} against "
            f"{_amount(second, top[second], total)} for the most {_good(cfg)} (trial "
            f"{top['trial']}), and {_cost(cfg, summary, chosen, top)}."
        )
    sign = -1.0 if cfg.directions[1] == "maximize" else 1.0
    cheaper = [r for r in rows if sign * (r[second] - chosen[second]) < 0]
    if cheaper:  # the most accurate of those cheaper than the choice
        nxt = min(cheaper, key=lambda r: r["rank"])
        line += (
            f" Cheaper still, trial {nxt['trial']} ({what} "
            f"{_amount(second, nxt[second], total)}) {_cost(cfg, summary, nxt, chosen)} "
            "against the choice."
        )
    return line


def _cost(cfg: SweepConfig, summary: SweepSummary, mine: dict, theirs: dict) -> str:
    """ "loses 0.031 validation accuracy (± 0.012, 5 seeds paired)": the first objective's
    change from ``theirs`` to ``mine``, paired seed by seed."""
    first = cfg.objective_keys[0]
    by_seed = {
        r.seed: r.metrics.get(first, math.nan) for r in summary.reruns if r.trial == theirs["trial"]
    }
    changes = [
        r.metrics.get(first, math.nan) - by_seed.get(r.seed, math.nan)
        for r in summary.reruns
        if r.trial == mine["trial"]
    ]
    paired = sum(map(math.isfinite, changes))
    if paired < 2:
        return "too few seeds to say what it costs"
    change, se = finite_mean(changes), standard_error(changes)
    verb = "gains" if _better(cfg, change) else "loses"
    label = OBJECTIVES[cfg.objectives[0]].label
    return f"{verb} {abs(change):.3g} {label} (± {se:.2g}, {paired} seeds paired)"


def _good(cfg: SweepConfig) -> str:
    return "accurate" if cfg.study.metric == "val_accuracy" else "fitting (validation loss)"


def _better(cfg: SweepConfig, change: float) -> bool:
    return change > 0 if cfg.direction == "maximize" else change < 0


def _total_weights(summary: SweepSummary) -> int | None:
    model = summary.test_metrics.get("best", {}).get("model")
    weights = getattr(model, "weights_", None)
    return sum(int(W.size) for W in weights) if weights else None


def _amount(key: str, value: float, total: int | None) -> str:
    if key == "nonzero_weights" and total:
        return f"{value:.0f} ({value / total:.1%} of {total})"
    return short(value)


def objective_names(cfg: SweepConfig) -> str:
    """The objectives as said: "validation accuracy (maximize) and non-zero weights
    (minimize)"."""
    parts = [
        f"{OBJECTIVES[o].label} ({d})" for o, d in zip(cfg.objectives, cfg.directions, strict=True)
    ]
    return " and ".join(parts)
