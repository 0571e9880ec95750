"""The end of a sweep: the configuration chosen on validation and each baseline, evaluated on
the test split.

Without ``[study] repeats``: the best trial and each baseline, tested once (with
cross-validation: each fold's network, averaged).

With repeats (:func:`rerun_and_choose`): the ``top_k`` configurations of the search and each
baseline are trained again with each of :func:`repeat_seeds` (every fold with cross-validation),
so that the choice does not reward one lucky seed. The choice is made on their validation
means (``select = "mean"``), or by the one-standard-error rule (``"one_se"``): of the
configurations within one standard error of the best mean, the one whose networks have the
smallest weight norm, i.e. the simplest, most regularised. The chosen configuration and each
baseline are then tested on those same networks, each looked at once: mean and spread.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from joblib import Parallel, delayed
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import SweepConfig, feasible, front_of, full_values, trial_values
from pipeline.core import MLP, Dataset, DivergenceError, mean_of, splits_of
from pipeline.names import BASELINE, OVERRIDES
from pipeline.results import value_of
from pipeline.search._delivery import deliver, epochs_of
from pipeline.search._objective import build_model, network_metrics
from pipeline.search._study import best_trial, model_path

TUNED = "tuned"  # the best configuration of the search itself, when a baseline was chosen
SEED_BY_SEED = {"test_loss": "test_losses", "test_accuracy": "test_accuracies"}


@dataclass
class Rerun:
    """One configuration trained again with one seed: its validation metrics (means over the
    folds), and its test metrics, kept only for the chosen configuration and the baselines."""

    trial: int
    seed: int
    hyperparameters: dict[str, Any]
    metrics: dict[str, float]  # final_val_* and weight_norm, train_time; NaN when diverged
    test: dict[str, float] = field(default_factory=dict)
    reason: str | None = None  # why its training failed


@dataclass
class Evaluation:
    tests: dict[str, dict[str, Any]]  # "best", each baseline (and "tuned") -> metrics
    chosen: FrozenTrial | None = None
    reruns: list[Rerun] = field(default_factory=list)
    # one row per re-run configuration: trial, baseline, mean, se, weight norm, chosen
    selection: list[dict[str, Any]] = field(default_factory=list)
    delivered: dict[str, Any] = field(default_factory=dict)  # see pipeline.search._delivery


def evaluate_on_test(
    cfg: SweepConfig, study: optuna.Study, d: Dataset, models_dir: Path
) -> Evaluation:
    if cfg.study.repeats:
        return rerun_and_choose(cfg, study, d, models_dir)
    best = best_trial(study)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    searched = [t for t in complete if not t.user_attrs.get(BASELINE)]
    sign = -1.0 if cfg.direction == "maximize" else 1.0
    tuned = min(searched, key=lambda t: (not feasible(t), sign * value_of(t)), default=None)
    chosen = _named(best, tuned, complete)
    trials = {t.number: t for t in chosen.values()}
    # trained again: with folds every fold's network (the one saved is the first's); without,
    # a network not saved here (a cluster's workers send theirs to MLflow): the same network
    again = [t for t in trials.values() if cfg.study.folds or not _saved(models_dir, t)]
    measured = _parallel(cfg, [(t, None) for t in again], d) if again else []
    by_number: dict[int, tuple[Any, ...]] = {
        t.number: m for t, m in zip(again, measured, strict=True)
    }
    for n, t in trials.items():
        if n not in by_number:
            by_number[n] = _own_network(cfg, t, d, models_dir)
    results: dict[str, dict[str, Any]] = {}
    for name, t in chosen.items():
        val, test = by_number[t.number][:2]
        val = {k: v for k, v in val.items() if k.startswith("final_val_")}  # as when loaded
        results[name] = {"trial": t.number, **val, **test}
        if not math.isclose(results[name][cfg.objective], value_of(t), rel_tol=1e-9, abs_tol=1e-12):
            print(
                f"warning: retraining trial {t.number} gave {cfg.objective} "
                f"{results[name][cfg.objective]} instead of {value_of(t)}",
                file=sys.stderr,
            )
    if "best" in results:
        best = chosen["best"]
        results["best"]["model"] = _model(cfg, best, d, models_dir)
        epochs = [by_number[best.number][0].get("epochs", math.nan)]  # folds: their mean
        delivered = deliver(cfg, best, d, results["best"]["model"], epochs)
        return Evaluation(results, best, delivered=delivered)
    return Evaluation(results, chosen.get("best"))


def _named(
    best: FrozenTrial | None, tuned: FrozenTrial | None, trials: list[FrozenTrial]
) -> dict[str, FrozenTrial]:
    """The rows reported on test, by name: ``best``; ``tuned`` (the search's own best) when
    the best is a baseline; and each baseline among ``trials``."""
    if best is None:
        return {}
    named = {"best": best}
    if best.user_attrs.get(BASELINE) and tuned is not None:
        named[TUNED] = tuned
    for t in trials:
        if t.user_attrs.get(BASELINE):
            named.setdefault(t.user_attrs[BASELINE], t)
    return named


def repeat_seeds(cfg: SweepConfig) -> list[int]:
    """The seeds of the re-runs: the same for every configuration, so that their results pair
    up seed by seed; none of them the study's own seed (which chose the candidates)."""
    return [cfg.study.seed + 1 + k for k in range(cfg.study.repeats or 0)]


def candidates(cfg: SweepConfig, study: optuna.Study) -> list[FrozenTrial]:
    """The ``top_k`` configurations of the search (distinct parameters, best first; those
    that keep the constraints) and each baseline: the configurations trained again. With
    several objectives, the ``top_k`` of the Pareto front best on the first objective: the
    choice is made within one standard error of the best of them."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(
        (t for t in complete if not t.user_attrs.get(BASELINE) and feasible(t)),
        key=value_of,
        reverse=cfg.direction == "maximize",
    )
    if cfg.multi:  # the front's members best on the first objective: the rule looks there
        ranked = front_of(ranked, cfg.directions)
    top: dict[str, FrozenTrial] = {}
    for t in ranked:
        top.setdefault(repr(sorted(t.params.items())), t)  # a repeated suggestion counts once
        if len(top) == cfg.study.top_k:
            break
    baselines = {t.user_attrs[BASELINE]: t for t in complete if t.user_attrs.get(BASELINE)}
    return [*top.values(), *baselines.values()]


def rerun_and_choose(
    cfg: SweepConfig, study: optuna.Study, d: Dataset, models_dir: Path
) -> Evaluation:
    pool = candidates(cfg, study)
    if not pool:
        return Evaluation({})
    seeds = repeat_seeds(cfg)
    jobs = [(t, seed) for t in pool for seed in seeds]
    measured = _parallel(cfg, jobs, d)
    reruns = [
        Rerun(t.number, seed, full_values(cfg, _values(cfg, t, seed)), val, test, reason)
        for (t, seed), (val, test, reason) in zip(jobs, measured, strict=True)
    ]
    selection = _selection(cfg, pool, reruns)
    chosen = next(t for t, row in zip(pool, selection, strict=True) if row["chosen"])
    ranked = sorted(zip(selection, pool, strict=True), key=lambda pair: pair[0]["rank"])
    tuned = next((t for row, t in ranked if not row["baseline"]), None)  # by the same rule
    named = _named(chosen, tuned, pool)
    tested = {t.number for t in named.values()}
    for rerun in reruns:  # the networks of configurations not reported are never tested
        if rerun.trial not in tested:
            rerun.test = {}
    tests = {name: _over_seeds(cfg, t, reruns) for name, t in named.items()}
    tests["best"]["model"] = _model(cfg, chosen, d, models_dir)
    epochs = [r.metrics.get("epochs", math.nan) for r in reruns if r.trial == chosen.number]
    delivered = deliver(cfg, chosen, d, tests["best"]["model"], epochs, seeds)
    return Evaluation(tests, chosen, reruns, selection, delivered)


def _selection(
    cfg: SweepConfig, pool: list[FrozenTrial], reruns: list[Rerun]
) -> list[dict[str, Any]]:
    """Each candidate's validation mean and standard error over the seeds, its networks'
    mean weight norm (and each other objective's mean), its rank and whether it is chosen. A
    candidate that breaks the study's constraints ranks after every one that keeps them, and
    one with a diverged seed after every one with fewer.

    With several objectives the choice is the one-standard-error rule on the second: of the
    configurations within one standard error of the best mean, the best on the second
    objective (the sparsest, the fastest, ...)."""
    sign = -1.0 if cfg.direction == "maximize" else 1.0
    others = cfg.objective_keys[1:]
    rows = []
    for t in pool:
        mine = [r for r in reruns if r.trial == t.number]
        values = np.array([r.metrics.get(cfg.objective, math.nan) for r in mine])
        finite = values[np.isfinite(values)]
        norms = [r.metrics["weight_norm"] for r in mine if np.isfinite(r.metrics["weight_norm"])]
        rows.append(
            {
                "trial": t.number,
                "baseline": t.user_attrs.get(BASELINE, ""),
                "search_value": value_of(t),
                "seeds": len(values),
                "diverged": int(len(values) - len(finite)),
                "mean": float(finite.mean()) if len(finite) else math.nan,
                "se": standard_error(finite),
                "weight_norm": float(np.mean(norms)) if norms else math.nan,
                "feasible": feasible(t),  # keeps the study's constraints (a baseline may not)
            }
            | {key: finite_mean([r.metrics.get(key, math.nan) for r in mine]) for key in others}
        )
    order = sorted(
        range(len(rows)),
        key=lambda i: (
            not rows[i]["feasible"],
            rows[i]["diverged"],
            sign * np.nan_to_num(rows[i]["mean"], nan=np.inf),
        ),
    )
    for rank, i in enumerate(order):
        rows[i]["rank"] = rank + 1
        rows[i]["chosen"] = False
    best = rows[order[0]]
    pick = best
    if (cfg.study.select == "one_se" or cfg.multi) and math.isfinite(best["se"]):
        # within one standard error of the best mean: the smallest weights win, or with
        # several objectives the best on the second
        near = [
            row
            for row in rows
            if (row["diverged"], row["feasible"]) == (best["diverged"], best["feasible"])
            and sign * (row["mean"] - best["mean"]) <= best["se"]
        ]
        key, second = "weight_norm", 1.0
        if cfg.multi:
            key, second = others[0], -1.0 if cfg.directions[1] == "maximize" else 1.0
        pick = min(
            near, key=lambda row: (np.nan_to_num(second * row[key], nan=np.inf), row["rank"])
        )
    pick["chosen"] = True
    return rows


def finite_mean(values: Sequence[float]) -> float:
    """The mean of the finite values (a diverged seed is NaN), NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def standard_error(values: Sequence[float]) -> float:
    """The standard error of the finite values' mean, NaN below two."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.std(finite, ddof=1) / math.sqrt(len(finite))) if len(finite) > 1 else math.nan


def _over_seeds(cfg: SweepConfig, t: FrozenTrial, reruns: list[Rerun]) -> dict[str, Any]:
    """A tested configuration's validation and test metrics over the seeds: mean, standard
    deviation, and the test metrics seed by seed (NaN where training diverged)."""
    mine = [r for r in reruns if r.trial == t.number]
    row: dict[str, Any] = {"trial": t.number, "seeds": len(mine)}
    keys = [k for k in (*mine[0].metrics, *mine[0].test) if k.startswith(("final_val_", "test_"))]
    for key in dict.fromkeys(keys):
        values = np.array([(r.metrics | r.test).get(key, math.nan) for r in mine])
        finite = values[np.isfinite(values)]
        row[key] = float(finite.mean()) if len(finite) else math.nan
        row[f"{key}_std"] = float(finite.std(ddof=1)) if len(finite) > 1 else math.nan
        if key in SEED_BY_SEED:
            row[SEED_BY_SEED[key]] = [float(v) for v in values]
    row["test_loss_mean"] = row["test_loss"]  # the names of earlier stores
    row["test_loss_diverged"] = sum(not math.isfinite(v) for v in row["test_losses"])
    return row


def _values(cfg: SweepConfig, t: FrozenTrial, seed: int | None) -> dict[str, Any]:
    values = trial_values(cfg, t.params, t.user_attrs.get(OVERRIDES))
    if seed is not None:  # initial weights, dropout masks, batch order, augmentation
        values |= {"seed": seed, "noise_seed": None}
    return values


def _parallel(
    cfg: SweepConfig, jobs: Sequence[tuple[FrozenTrial, int | None]], d: Dataset
) -> list[tuple[dict[str, float], dict[str, float], str | None]]:
    # joblib's default backend (loky): local processes, or the cluster's within _dask.end_on
    return Parallel(n_jobs=min(cfg.study.n_jobs, len(jobs) or 1))(
        delayed(measure)(cfg, _values(cfg, t, seed), d) for t, seed in jobs
    )


def measure(
    cfg: SweepConfig, values: dict[str, Any], d: Dataset
) -> tuple[dict[str, float], dict[str, float], str | None]:
    """Train a configuration on the study's split, or on every fold; its validation metrics
    (``final_val_*``, ``weight_norm``, ``train_time``) and test metrics (``test_*``), means
    over the folds, and the reason when training diverged (then every value is NaN)."""
    from threadpoolctl import threadpool_limits

    vals, tests = [], []
    start = time.perf_counter()
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            for split in splits_of(d, cfg.study.folds, cfg.study.seed):
                model = build_model(values, d.task).fit(
                    split.X_train, split.y_train, split.X_val, split.y_val
                )
                val, test = _on_val_and_test(model, split)
                vals.append(val | network_metrics(model, split) | {"epochs": epochs_of(model)})
                tests.append(test)
    except DivergenceError as err:  # said as a count in the summary, not an error of the sweep
        keys = ["final_val_loss", "weight_norm", "epochs"] + (
            ["final_val_accuracy"] if d.task == "classification" else []
        )
        test_keys = ["test_loss"] + (["test_accuracy"] if d.task == "classification" else [])
        return (
            dict.fromkeys(keys, math.nan) | {"train_time": time.perf_counter() - start},
            dict.fromkeys(test_keys, math.nan),
            f"DivergenceError: {err}",
        )
    return mean_of(vals) | {"train_time": time.perf_counter() - start}, mean_of(tests), None


def _saved(models_dir: Path, t: FrozenTrial) -> bool:
    return model_path(models_dir, t.number).exists()


def _own_network(
    cfg: SweepConfig, t: FrozenTrial, d: Dataset, models_dir: Path
) -> tuple[dict[str, float], dict[str, float]]:
    """The trial's own network (saved by its worker; retrained, the same, when missing)
    measured on validation and test, through the preprocessing of the split it trained on
    (the study's, or its first fold's)."""
    split = splits_of(d, cfg.study.folds, cfg.study.seed)[0]
    return _on_val_and_test(_model(cfg, t, d, models_dir), split)


def _on_val_and_test(model: MLP, split: Dataset) -> tuple[dict[str, float], dict[str, float]]:
    """``final_val_*`` on the split's validation rows and ``test_*`` on the study's test rows,
    both through the split's own preprocessing."""
    val, test = model.evaluate(split.X_val, split.y_val), model.evaluate(split.X_test, split.y_test)
    return {f"final_val_{k}": v for k, v in val.items()}, {f"test_{k}": v for k, v in test.items()}


def _model(cfg: SweepConfig, t: FrozenTrial, d: Dataset, models_dir: Path) -> MLP:
    """A trial's own network: the one its worker saved, or the same retrained (study seed,
    first split)."""
    path = model_path(models_dir, t.number)
    if path.exists():
        return MLP.load(path)
    from threadpoolctl import threadpool_limits

    split = splits_of(d, cfg.study.folds, cfg.study.seed)[0]
    with threadpool_limits(limits=1, user_api="blas"):
        return build_model(_values(cfg, t, None), d.task).fit(
            split.X_train, split.y_train, split.X_val, split.y_val
        )
