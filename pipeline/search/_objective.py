"""One trial: hyperparameters from the sweep and the trial, an MLP trained on the splits, its
validation metric reported each epoch for pruning, and the result.

Nothing here talks to MLflow: the worker logs the :class:`TrialResult` it returns. The test
split is never touched here; only the sweep's end evaluates its best configuration on it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import optuna

from pipeline.config import SweepConfig, full_values, model_kwargs, trial_values
from pipeline.core import MLP, Dataset, mean_of, splits_of
from pipeline.names import (
    BASELINE,
    COMPLETE,
    FAILED,
    INTERRUPTED,
    INTERRUPTED_REASON,
    OVERRIDES,
    PRUNED,
)
from pipeline.results import TrialResult
from pipeline.search._study import suggest


class StopRequested(Exception):  # noqa: N818 - a request, not an error
    """The sweep is being stopped (Ctrl-C): the trial ends where it is."""


def build_model(values: dict[str, Any], task: str) -> MLP:
    """The network of a trial's hyperparameters (sweep-file names and values)."""
    return MLP(task=task, **model_kwargs(values))


def final_metrics(model: MLP, d: Dataset, train_time: float) -> dict[str, float]:
    """Per-trial summary metrics of the trained model, without the test split.

    ``final_*`` are measured on the model the trial returns (with early stopping: the restored
    best epoch; else the last epoch); the objective is ``final_<metric>``. ``gen_gap`` is
    validation loss minus training loss, both measured at inference (no dropout).
    """
    train = model.evaluate(d.X_train, d.y_train)
    val = model.evaluate(d.X_val, d.y_val)
    metrics = {
        "final_val_loss": val["loss"],
        "best_val_loss": model.best_val_loss_,
        "final_train_loss": train["loss"],
        "gen_gap": val["loss"] - train["loss"],
        "best_epoch": float(model.best_epoch_ or model.stopped_epoch_),
        "stopped_epoch": float(model.stopped_epoch_),
        "sparsity": model.sparsity(),
        "train_time": train_time,
    } | network_metrics(model, d)
    if "accuracy" in val:
        metrics["final_val_accuracy"] = val["accuracy"]
        metrics["final_train_accuracy"] = train["accuracy"]
    return metrics


def network_metrics(model: MLP, d: Dataset) -> dict[str, float]:
    """What a study may trade against its validation metric, measured on the network itself:
    weight norm, non-zero weights, inference time and (classification) calibration."""
    metrics = {
        "weight_norm": model.weight_norm(),
        "nonzero_weights": float(model.nonzero_weights()),
        "inference_time": inference_time(model, d.X_val),
    }
    if d.task == "classification":
        metrics["final_val_ece"] = calibration_error(model.predict_proba(d.X_val), d.y_val)
    return metrics


def inference_time(model: MLP, X: np.ndarray, rows: int = 1000) -> float:
    """Seconds to predict ``rows`` rows (the validation rows repeated), best of 3 passes: the
    least disturbed by other processes on the machine."""
    batch = np.resize(X, (rows, X.shape[1]))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.predict(batch)
        times.append(time.perf_counter() - start)
    return min(times)


def calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: over ``bins`` equal-width bins of the predicted class's
    probability, the row-weighted mean of |accuracy - mean probability|."""
    confidence, predicted = proba.max(axis=1), proba.argmax(axis=1)
    correct = predicted == np.asarray(y).ravel()
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    error = 0.0
    for b in np.unique(which):
        in_bin = which == b
        error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


# stochastic passes averaged for final_val_loss_mc: ten passes in all (one run, read at 1, 3
# and 10); on the chapter's dropout study the ratio to weight scaling is flat from T = 3 on
# (0.994, 0.988, 0.989, 0.991 at 3, 10, 30, 100). Measured with a trial's figures, not in the
# worker: ten passes over the default sweep's 5000 validation points are about 6% of a trial.
MC_SAMPLES = (1, 3, 10)


def mc_curve(model: MLP, d: Dataset) -> dict[int, float]:
    """The ensemble view of dropout: validation loss of the average of T stochastic passes
    (dropout and DropConnect masks as in training), by T; empty for a network that drops
    nothing. Against ``final_val_loss`` (weight scaling) it says how well the one
    deterministic pass approximates the ensemble of thinned networks."""
    if not stochastic(model):
        return {}
    return model.mc_losses(d.X_val, d.y_val, MC_SAMPLES)


def stochastic(model: MLP) -> bool:
    """Whether the network drops units or weights in training (so MC averaging differs)."""
    return min(model.keep_prob, model.input_keep_prob, model.connect_keep_prob) < 1.0


@contextlib.contextmanager
def reports_of(trial: optuna.Trial, background: bool) -> Iterator[Callable[[float, int], None]]:
    """The trial's ``report(value, step)``. With ``background`` (no pruning question waits for
    the value) the reports go to the study in order from a thread of their own, so that
    training does not wait for each write (1.7 ms a round trip through a cluster's storage
    proxy, 0.3 ms to a local journal); all are written, or the first error raised, on leaving.
    """
    if not background:
        yield lambda value, step: trial.report(value, step=step)
        return
    pending: list[Future] = []
    with ThreadPoolExecutor(1, thread_name_prefix="trial-reports") as writer:
        # leaving waits for every write, also when training ended with an exception
        yield lambda value, step: pending.append(writer.submit(trial.report, value, step))
    for future in pending:
        future.result()


def run_trial(
    trial: optuna.Trial, cfg: SweepConfig, d: Dataset, stop_requested: Any = lambda: False
) -> TrialResult:
    """Train the trial's configuration and report ``cfg.study.metric`` for pruning: every
    ``report_every`` epochs, or with cross-validation (``[study] folds``) the mean over the
    folds done so far, after each fold (the pruner's step is the fold count).

    Returns a result in every case but Ctrl-C: pruned and failed trials (a diverging loss, an
    error in training) keep their partial history and the reason. With folds, the history and
    the model are those of the first fold, the final metrics are means over the folds, and
    ``folds`` holds each fold's.
    """
    values = trial_values(cfg, suggest(trial, cfg), trial.user_attrs.get(OVERRIDES))
    result = TrialResult(hyperparameters=full_values(cfg, values))
    metric = cfg.study.metric
    splits = splits_of(d, cfg.study.folds, cfg.study.seed)
    every = cfg.report_every
    # a baseline is the reference every answer is measured against: it always runs to the end;
    # a pruner that never prunes is not asked (each question reads the study: on a cluster, a
    # round trip to the storage every report)
    never = isinstance(trial.study.pruner, optuna.pruners.NopPruner)
    prunable = not trial.user_attrs.get(BASELINE) and not never
    per_fold = isinstance(trial.study.pruner, optuna.pruners.WilcoxonPruner)

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        if epoch % every:  # each report and each stop check is a system call or a file write
            return
        if stop_requested():
            raise StopRequested
        if cfg.study.folds:  # reported after each fold instead
            return
        reported(row[metric], epoch)
        if prunable and trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}: {metric} {row[metric]:.4g}")

    start = time.perf_counter()
    model = None
    try:
        with reports_of(trial, background=not prunable) as report:
            reported = _no_report if cfg.multi else report
            for fold, split in enumerate(splits):
                model = build_model(values, d.task)
                result.model = result.model or model
                model.fit(split.X_train, split.y_train, split.X_val, split.y_val, on_epoch=on_epoch)
                if cfg.study.folds:
                    result.folds.append(final_metrics(model, split, math.nan))
                    done = float(np.mean([m[f"final_{metric}"] for m in result.folds]))
                    # Wilcoxon's test pairs each fold's own value with the best trial's
                    reported(result.folds[-1][f"final_{metric}"] if per_fold else done, fold + 1)
                    if prunable and trial.should_prune():
                        raise optuna.TrialPruned(
                            f"pruned after fold {fold + 1} of {len(splits)}: "
                            f"mean {metric} {done:.4g}"
                        )
    except optuna.TrialPruned as pruned:
        result.state, result.reason = PRUNED, str(pruned)
    except StopRequested:
        result.state, result.reason = INTERRUPTED, INTERRUPTED_REASON
    except Exception as err:  # a diverging loss, or any error: the trial fails, the sweep goes on
        result.state, result.reason = FAILED, f"{type(err).__name__}: {err}"
    _finish(result, model, cfg, d, time.perf_counter() - start)
    return result


def _no_report(value: float, step: int) -> None:
    """A study of several objectives keeps no intermediate values (nor prunes)."""


def _finish(
    result: TrialResult, last: MLP | None, cfg: SweepConfig, d: Dataset, elapsed: float
) -> None:
    """The result's history (the first fold's), its final metrics (means over the folds) and
    the objective; a pruned trial's ``stopped_epoch`` is its last network's."""
    first = result.model
    result.history = getattr(first, "history_", {}) if first is not None else {}
    result.metrics = {"train_time": elapsed}
    if result.state == PRUNED and last is not None:
        result.metrics["stopped_epoch"] = float(last.stopped_epoch_)
    if result.state == COMPLETE and first is not None:
        if cfg.study.folds:
            result.metrics = mean_of(result.folds) | {"train_time": elapsed}
        else:
            result.metrics = final_metrics(first, d, elapsed)
        result.values = [result.metrics[key] for key in cfg.objective_keys]
        result.value = result.values[0]
    if result.state in (COMPLETE, PRUNED):  # a value not measured (NaN) is not kept
        values = [c.value(result.metrics) for c in cfg.constraints]
        result.constraints = [v if math.isfinite(v) else math.inf for v in values]
