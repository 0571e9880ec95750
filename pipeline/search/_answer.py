"""The answer in words: which configuration was chosen and how, what it does against no
regularisation with its uncertainty, which regularisers the top configurations use and which
they switch off, which chosen values sit at the edge of their search range, and how the peer
compares. Printed at the end of the sweep, kept on the parent run, headline of the report."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from pipeline.config import SweepConfig, model_value, pareto_trials, trial_values
from pipeline.core import PARAMETER_CONSTRAINTS, REGULARISER_LABELS
from pipeline.names import (
    BASELINE,
    COMPLETE,
    FAILED,
    NOISE_SE,
    OVERRIDES,
    PRUNED,
    REGULARISERS_OFF,
    short,
)
from pipeline.results import SweepSummary, value_of
from pipeline.search._delivery import HOW
from pipeline.search._peer import TUNED_ALPHA
from pipeline.search._tradeoff import objective_names, tradeoff_sentence
from pipeline.tracking import runs_link

EDGE = 0.05  # a value within this share of its range (log scale where searched so) is at an edge
NEAR_OFF = 0.10  # within this share of the "off" end, a regulariser is as good as off
TOP = 5  # top configurations read without re-runs


def sentences(cfg: SweepConfig, study: optuna.Study, summary: SweepSummary) -> list[str]:
    tests = summary.test_metrics
    if summary.best is None or "best" not in tests:
        return []
    best = summary.best
    values = trial_values(cfg, best.params, best.user_attrs.get(OVERRIDES))
    lines = [_chosen(cfg, best, values, summary)]
    if cfg.multi:
        front = pareto_trials(study)
        lines.append(
            f"The Pareto front of {objective_names(cfg)} holds {len(front)} of "
            f"{summary.states.get(COMPLETE, 0)} complete trials (tagged pareto = true)."
        )
        lines.append(tradeoff_sentence(cfg, summary))
    if "unregularised" in tests and best.user_attrs.get(BASELINE) != "unregularised":
        lines.append(_against(cfg, tests["best"], tests["unregularised"]))
    if summary.ablation:  # measured: each regulariser of the pick switched off
        lines += [switched.sentence(cfg.objective) for switched in summary.ablation]
    else:  # read off the top configurations' values
        lines += _regularisers(cfg, _top(cfg, study, summary))
    lines += _edges(cfg, values)
    if TUNED_ALPHA in summary.peers:  # the model delivered, trained on what the peer is
        lines.append(_peer(cfg, summary.delivered or tests["best"], summary.peers[TUNED_ALPHA]))
    if summary.delivered:
        lines.append(_delivered(summary.delivered))
    return [line for line in lines if line]


def _delivered(d: dict[str, Any]) -> str:
    """What the user takes away, and its own test figures."""
    tested = ", ".join(
        f"{k} {short(float(d[k]))}" for k in ("test_loss", "test_accuracy") if k in d
    )
    return (
        f"Delivered: {HOW[d['how']]} (trial {d['trial']}'s configuration, {d['epochs']} "
        f"epochs), the study's MLflow model: {tested}, evaluated once."
    )


def _chosen(cfg: SweepConfig, best: Any, values: dict[str, Any], summary: SweepSummary) -> str:
    how = f"the best {cfg.objective} of the search (one seed)"
    if cfg.study.repeats:
        rule = (
            "the one-standard-error rule (the smallest weights within one standard error of "
            "the best mean)"
            if cfg.study.select == "one_se"
            else f"the best mean {cfg.objective}"
        )
        of = f"the top {cfg.study.top_k}"
        if cfg.multi:
            rule = (
                f"the best mean {cfg.objective_keys[1]} within one standard error of the best "
                f"mean {cfg.objective}"
            )
            of = f"the Pareto front's top {cfg.study.top_k}"
        how = f"{rule} over {cfg.study.repeats} seeds, of {of} and the baselines"
    if cfg.study.folds:
        how += f", each a mean over {cfg.study.folds} folds"
    baseline = best.user_attrs.get(BASELINE)
    if baseline:
        return f"Chosen: the {baseline} baseline (trial {best.number}), by {how}."
    settings = ", ".join(f"{k} = {short(values[k])}" for k in cfg.search if k in values)
    return f"Chosen: trial {best.number} ({settings}), by {how}."


def _against(cfg: SweepConfig, pick: dict[str, Any], reference: dict[str, Any]) -> str:
    """The pick's test loss against the unregularised baseline's: paired over the seeds when
    there are re-runs, else one network each."""
    if "test_losses" not in pick:
        change = pick["test_loss"] / reference["test_loss"] - 1
        return (
            f"Against no regularisation: test loss {short(pick['test_loss'])} against "
            f"{short(reference['test_loss'])} ({change:+.0%}; one network each, no spread "
            "measured: set [study] repeats)."
        )
    mine, theirs = np.array(pick["test_losses"]), np.array(reference["test_losses"])
    both = np.isfinite(mine) & np.isfinite(theirs)
    if both.sum() < 2:
        return "Against no regularisation: too few seeds trained without diverging to compare."
    # the change seed by seed (the same seed's networks start from the same weights), then
    # its mean and standard error over the seeds
    changes = mine[both] / theirs[both] - 1
    change = float(changes.mean())
    se = float(changes.std(ddof=1) / math.sqrt(len(changes)))
    verb = "lowers" if change < 0 else "raises"
    verdict = "" if abs(change) > NOISE_SE * se else ", within noise"
    line = (
        f"Against no regularisation it {verb} test loss by {abs(change):.0%} ± {se:.0%} "
        f"({short(float(mine[both].mean()))} against {short(float(theirs[both].mean()))}, "
        f"{int(both.sum())} seeds paired{verdict})"
    )
    if "test_accuracy" in pick and "test_accuracy" in reference:
        line += (
            f"; test accuracy {pick['test_accuracy']:.3f} ± {pick['test_accuracy_std']:.3f} "
            f"against {reference['test_accuracy']:.3f} ± {reference['test_accuracy_std']:.3f}"
        )
    return line + "."


def _top(cfg: SweepConfig, study: optuna.Study, summary: SweepSummary) -> list[dict[str, Any]]:
    """The hyperparameters of the top configurations of the search: the re-run candidates,
    else the best few by the objective."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    if summary.selection:
        numbers = [row["trial"] for row in summary.selection if not row["baseline"]]
    else:
        ranked = sorted(
            (t for t in trials.values() if not t.user_attrs.get(BASELINE)),
            key=value_of,
            reverse=cfg.direction == "maximize",
        )
        numbers = [t.number for t in ranked[:TOP]]
    return [
        trial_values(cfg, trials[n].params, trials[n].user_attrs.get(OVERRIDES)) for n in numbers
    ]


def _position(p: Any, value: float) -> float:
    """Where ``value`` sits in the search range, 0 at low and 1 at high (log where searched)."""
    low, high, value = float(p.low), float(p.high), float(value)
    if not low <= value <= high:  # a baseline's value outside the range (l1 = 0 on a log scale)
        return -math.inf if value < low else math.inf
    if p.log:
        low, high, value = math.log(low), math.log(high), math.log(value)
    return (value - low) / (high - low)


def _regularisers(cfg: SweepConfig, top: list[dict[str, Any]]) -> list[str]:
    """For each searched regulariser: switched off in every top configuration, or in use and
    at which values."""
    lines = []
    for key, p in cfg.search.items():
        if key not in REGULARISERS_OFF or p.type == "categorical" or not top:
            continue
        off = float(REGULARISERS_OFF[key])
        values = [float(v[key]) for v in top if key in v]
        if not values:
            continue
        off_high = off >= p.high  # keep probabilities: "off" is the top of the range
        share = [1 - _position(p, v) if off_high else _position(p, v) for v in values]
        near_off = [v == off or s <= NEAR_OFF for v, s in zip(values, share, strict=True)]
        name = REGULARISER_LABELS.get(key, key)
        name = name[0].upper() + name[1:]  # "DropConnect" keeps its capitals
        if all(near_off):
            bound = min(values) if off_high else max(values)
            sign = ">=" if off_high else "<="
            lines.append(
                f"{name} does not help here ({key} {sign} {short(bound)} in every "
                f"top configuration, {short(off)} is off)."
            )
        else:
            lines.append(
                f"{name} is in use: {key} {short(float(np.median(values)))} "
                f"(median of the top {len(values)}; {short(min(values))}..{short(max(values))})."
            )
    return lines


def _edges(cfg: SweepConfig, values: dict[str, Any]) -> list[str]:
    """A chosen value at the edge of its range, where the range could be widened."""
    lines = []
    for key, p in cfg.search.items():
        if p.type == "categorical" or key not in values:
            continue
        where = _position(p, values[key])
        if not math.isfinite(where):
            continue
        for edge, bound, beyond, side in (
            (where <= EDGE, p.low, p.low / 10 if p.log else p.low - (p.high - p.low), "bottom"),
            (where >= 1 - EDGE, p.high, p.high * 10 if p.log else p.high + (p.high - p.low), "top"),
        ):
            if not edge:
                continue
            if key in REGULARISERS_OFF and (float(REGULARISERS_OFF[key]) >= p.high) == (
                side == "top"
            ):
                continue  # the "off" end of a regulariser: said above as not helping
            constraint = PARAMETER_CONSTRAINTS.get(key)
            wider = model_value(key, type(bound)(beyond))
            if constraint is not None and not constraint.test(wider):
                continue  # a hard bound (keep_prob 1, patience 0): nothing to widen
            lines.append(
                f"{key} = {short(values[key])} is at the {side} of its range "
                f"{short(p.low)}..{short(p.high)}: widen it."
            )
    return lines


def _peer(cfg: SweepConfig, pick: dict[str, Any], peer: dict[str, Any]) -> str:
    key = "test_accuracy" if "test_accuracy" in pick and "test_accuracy" in peer else "test_loss"
    better = pick[key] > peer[key] if key == "test_accuracy" else pick[key] < peer[key]
    same = math.isclose(pick[key], peer[key], rel_tol=1e-9)
    verdict = "matches" if same else "beats" if better else "loses to"
    return (
        f"The delivered model {verdict} scikit-learn's MLP with alpha chosen by GridSearchCV "
        f"({key} {short(float(pick[key]))} against {short(float(peer[key]))})."
    )


def study_note(
    summary: SweepSummary, experiment_id: str, best_run: str | None, objective: str
) -> str:
    """The parent run's description (MLflow renders it as markdown above the run): the
    answer at a glance, with links to the best trial's run and to the study's view."""
    states = summary.states
    trials = f"[{summary.n_trials} trials]({runs_link('', experiment_id).lstrip('/')})"
    lines = [
        f"**{summary.study_name}**: {states[COMPLETE]} complete, {states[PRUNED]} pruned, "
        f"{states[FAILED]} failed of {trials} (best first)."
    ]
    best = summary.best
    if best is not None:
        settings = ", ".join(f"{k} = {short(v)}" for k, v in best.params.items())
        link = f"[trial {best.number}](#/experiments/{experiment_id}/runs/{best_run})"
        value = f"{objective} {short(value_of(best))}"
        chosen = summary.test_metrics.get("best", {})
        if summary.selection and objective in chosen:  # the mean the choice was made on
            value = f"{objective} {short(chosen[objective])} (mean over the re-runs' seeds)"
        lines.append(
            f"Best on validation: {link}, {value}" + (f", with {settings}." if settings else ".")
        )
    tests = [
        f"{name} {short(m['test_loss'])}"
        for name, m in summary.test_metrics.items()
        if "test_loss" in m
    ]
    if tests:
        lines.append(f"Test loss, evaluated once after selection: {'; '.join(tests)}.")
    # the answer in words is the tag study.answer and the report's headline: in the note it
    # would push the link above under MLflow's truncation fade
    if summary.interrupted:
        lines.append("Interrupted: re-run the same command to resume.")
    lines.extend(f"Error: {error}" for error in summary.errors)
    return "\n\n".join(lines)
