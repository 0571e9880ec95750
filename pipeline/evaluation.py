"""The end of a sweep: the best configuration (chosen on validation) and each baseline,
evaluated once on the test split."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from joblib import Parallel, delayed
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import SweepConfig, trial_values
from pipeline.data import Dataset
from pipeline.mlp import MLP, DivergenceError
from pipeline.names import BASELINE, OVERRIDES
from pipeline.objective import build_model
from pipeline.study import best_trial, model_path


def evaluate_on_test(
    cfg: SweepConfig, study: optuna.Study, d: Dataset, models_dir: Path
) -> dict[str, dict[str, Any]]:
    """The best configuration (chosen on validation) and each baseline, evaluated once on the
    test split; when a baseline was the best, also ``tuned``: the best trial the search itself
    proposed. Their networks are the ones the workers saved; a missing one is retrained (same
    seed, so the same network). Either way it is checked against the trial's value."""
    chosen: dict[str, FrozenTrial] = {}
    best = best_trial(study)
    if best is not None:
        chosen["best"] = best
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    searched = [t for t in complete if not t.user_attrs.get(BASELINE)]
    if best is not None and best.user_attrs.get(BASELINE) and searched:
        pick = max if cfg.direction == "maximize" else min
        chosen[TUNED] = pick(searched, key=lambda t: t.value)
    for t in complete:
        name = t.user_attrs.get(BASELINE)
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
            "final_val_loss": val["loss"],
            "test_loss": test["loss"],
            "model": model,
        }
        if "accuracy" in test:
            results[name] |= {
                "final_val_accuracy": val["accuracy"],
                "test_accuracy": test["accuracy"],
            }
        if not math.isclose(results[name][cfg.objective], t.value, rel_tol=1e-9, abs_tol=1e-12):
            print(
                f"warning: retraining trial {t.number} gave {cfg.objective} "
                f"{results[name][cfg.objective]} instead of {t.value}",
                file=sys.stderr,
            )
    if cfg.study.repeats:
        _repeat(cfg, chosen, d, results)
    return results


TUNED = "tuned"  # the best trial of the search itself, when a baseline beat it on validation


def repeat_seeds(cfg: SweepConfig) -> list[int]:
    """The seeds of the repeats: the same for every configuration, so that their test losses
    pair up seed by seed; none of them the study's own seed."""
    return [cfg.study.seed + 1 + k for k in range(cfg.study.repeats)]


def _repeat(
    cfg: SweepConfig,
    chosen: dict[str, FrozenTrial],
    d: Dataset,
    results: dict[str, dict[str, Any]],
) -> None:
    """Train each chosen configuration again with each of :func:`repeat_seeds` (initial
    weights, dropout masks, batch order and augmentation all follow the seed) and test each
    network once: ``test_losses`` in seed order, their mean and standard deviation."""
    trials = {t.number: t for t in chosen.values()}  # the best is often a baseline too
    jobs = [(number, seed) for number in trials for seed in repeat_seeds(cfg)]
    losses = Parallel(n_jobs=min(cfg.study.n_jobs, len(jobs)), backend="loky")(
        delayed(_test_loss)(cfg, trials[number], d, seed) for number, seed in jobs
    )
    for name, t in chosen.items():
        mine = [loss for (n, _), loss in zip(jobs, losses, strict=True) if n == t.number]
        finite = [loss for loss in mine if math.isfinite(loss)]
        results[name] |= {
            "test_losses": mine,  # NaN where that seed's training diverged
            "test_loss_mean": float(np.mean(finite)) if finite else math.nan,
            "test_loss_std": float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan,
            "test_loss_diverged": len(mine) - len(finite),
        }


def _test_loss(cfg: SweepConfig, t: FrozenTrial, d: Dataset, seed: int) -> float:
    try:
        return _retrain(cfg, t, d, seed).evaluate(d.X_test, d.y_test)["loss"]
    except DivergenceError:  # said in the summary as a count, not an error of the sweep
        return math.nan


def _retrain(cfg: SweepConfig, t: FrozenTrial, d: Dataset, seed: int | None = None) -> Any:
    from threadpoolctl import threadpool_limits

    values = trial_values(cfg, t.params, t.user_attrs.get(OVERRIDES))
    if seed is not None:
        values |= {"seed": seed, "noise_seed": None}
    with threadpool_limits(limits=1, user_api="blas"):
        return build_model(values, d.task).fit(d.X_train, d.y_train, d.X_val, d.y_val)
