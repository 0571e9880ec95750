"""The answer, measured: each searched regulariser of the chosen configuration switched off
alone (its "off" value), everything else kept, and trained on the same seeds (and folds) as
the chosen configuration's re-runs; without re-runs, on the study's seed.

The change is paired seed by seed (the same seed starts both networks from the same weights):
``(off - on) / on`` of the objective on validation, and of the test loss (each network looked
at once), with its mean and standard error over the seeds. Switching a regulariser off that
makes the objective worse by more than :data:`~pipeline.names.NOISE_SE` standard errors
"helps"; better by as much, "hurts"; else "no effect within noise". One seed gives a change
but no verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from joblib import Parallel, delayed

from pipeline.config import SweepConfig, full_values, trial_values
from pipeline.core import REGULARISER_LABELS, Dataset
from pipeline.names import NOISE_SE, OVERRIDES, REGULARISERS_OFF, short
from pipeline.search._evaluation import (
    Evaluation,
    Rerun,
    finite_mean,
    measure,
    standard_error,
)

HELPS, HURTS, NOISE, ONE_SEED = "helps", "hurts", "no effect within noise", "one seed"


@dataclass
class Switched:
    """One regulariser of the chosen configuration, switched off: its paired changes."""

    key: str
    value: Any  # as chosen
    off: Any
    seeds: list[int | None]
    val_changes: list[float]  # seed by seed, relative, of the objective (off / on - 1)
    test_changes: list[float]  # seed by seed, relative, of the test loss
    verdict: str
    runs: list[Any] = field(default_factory=list)  # evaluation.Rerun, one a seed, switched off

    def row(self, objective: str) -> dict[str, Any]:
        """The table's row: means and standard errors of the changes."""
        return {
            "regulariser": self.key,
            "chosen": self.value,
            "off": self.off,
            "seeds": len(self.seeds),
            f"{objective} change": finite_mean(self.val_changes),
            f"{objective} change se": standard_error(self.val_changes),
            "test_loss change": finite_mean(self.test_changes),
            "test_loss change se": standard_error(self.test_changes),
            "verdict": self.verdict,
        }

    def sentence(self, objective: str) -> str:
        name = REGULARISER_LABELS.get(self.key, self.key)
        name = name[0].upper() + name[1:]
        change, se = finite_mean(self.val_changes), standard_error(self.val_changes)
        quantity = objective.removeprefix("final_").replace("_", " ")
        verb = "raises" if change > 0 else "lowers"
        spread = f" ± {se:.1%}" if math.isfinite(se) else ""
        verdict = (
            "one seed, no spread: set [study] repeats for a verdict"
            if self.verdict == ONE_SEED
            else self.verdict
        )
        return (
            f"{name} {self.key} {short(self.value)}: switching it off ({self.key} "
            f"{short(self.off)}) {verb} {quantity} by {abs(change):.1%}{spread} "
            f"({len(self.seeds)} seed(s) paired; {verdict})."
        )


def switched_keys(cfg: SweepConfig, values: dict[str, Any]) -> list[str]:
    """The searched regularisers the chosen configuration uses (not at their "off" value)."""
    return [
        key
        for key in cfg.search
        if key in REGULARISERS_OFF and key in values and values[key] != REGULARISERS_OFF[key]
    ]


def ablation(cfg: SweepConfig, evaluation: Evaluation, d: Dataset) -> list[Switched]:
    """The chosen configuration's regularisers switched off one at a time, against its
    re-runs (the same seeds), or without re-runs against itself trained again on the study's
    seed."""
    chosen = evaluation.chosen
    if chosen is None:
        return []
    values = trial_values(cfg, chosen.params, chosen.user_attrs.get(OVERRIDES))
    if not switched_keys(cfg, values):
        return []
    on: dict[int | None, Rerun] = {
        r.seed: r for r in evaluation.reruns if r.trial == chosen.number and not r.reason
    }
    if not on:
        val, test, reason = measure(cfg, values, d)
        if reason:
            return []
        on = {None: Rerun(chosen.number, cfg.study.seed, full_values(cfg, values), val, test)}
    return ablate(cfg, chosen, d, on)


def ablate(cfg: SweepConfig, trial: Any, d: Dataset, on: dict[int | None, Rerun]) -> list[Switched]:
    """Each regulariser of ``trial``'s configuration switched off, measured against ``on``
    (seed -> the chosen configuration's network with that seed; None: the study's seed), in
    parallel on the sweep's workers."""
    values = trial_values(cfg, trial.params, trial.user_attrs.get(OVERRIDES))
    keys = switched_keys(cfg, values)
    seeds = list(on)
    jobs = []
    for key in keys:
        for seed in seeds:
            switched = values | {key: REGULARISERS_OFF[key]}
            if seed is not None:
                switched |= {"seed": seed, "noise_seed": None}
            jobs.append((key, seed, switched))
    measured = Parallel(n_jobs=min(cfg.study.n_jobs, len(jobs) or 1))(
        delayed(measure)(cfg, v, d) for _, _, v in jobs
    )
    worse = -1.0 if cfg.direction == "maximize" else 1.0  # its sign when off is worse
    results = []
    for key in keys:
        mine = [(s, m) for (k, s, _), m in zip(jobs, measured, strict=True) if k == key]
        runs = [
            Rerun(trial.number, cfg.study.seed if s is None else s, full_values(cfg, v), *m)
            for (k, s, v), m in zip(jobs, measured, strict=True)
            if k == key
        ]
        val_changes = [
            _relative(m[0].get(cfg.objective), on[s].metrics.get(cfg.objective)) for s, m in mine
        ]
        test_changes = [
            _relative(m[1].get("test_loss"), on[s].test.get("test_loss")) for s, m in mine
        ]
        verdict = _verdict([worse * c for c in val_changes])
        off = REGULARISERS_OFF[key]
        results.append(
            Switched(key, values[key], off, seeds, val_changes, test_changes, verdict, runs)
        )
    return results


def _relative(off: float | None, on: float | None) -> float:
    if off is None or on is None or not (math.isfinite(off) and math.isfinite(on)) or on == 0:
        return math.nan
    return off / on - 1


def _verdict(changes: list[float]) -> str:
    """From the changes signed so that positive means switching off made it worse."""
    finite = [c for c in changes if math.isfinite(c)]
    if len(finite) < 2:
        return ONE_SEED
    change, se = finite_mean(finite), standard_error(finite)
    if abs(change) <= NOISE_SE * se:
        return NOISE
    return HELPS if change > 0 else HURTS
