"""The end's figures: each trial's curves, weights and activations, drawn from its run's
``history.csv`` and ``model.npz`` and logged back beside them with its ensemble view, and
Optuna's plots of the study on the parent run. Also ``python -m pipeline figures``.

Drawn after the budget (a figure costs more than a short trial's training), for the best trials,
the baselines and the chosen configuration, in the sweep's warm worker processes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric
from optuna.trial import TrialState

from pipeline.config import SweepConfig, mask_credentials
from pipeline.core import MLP, Dataset, load, splits_of
from pipeline.names import MC_METRIC
from pipeline.results import SweepSummary, value_of
from pipeline.search._objective import mc_curve
from pipeline.tracking import (
    SWEEP_RESOLVED,
    StudyTracker,
    find_parent_run,
    log_metrics,
    now_ms,
    read_history,
    tracking_uri,
    trial_runs,
)

FIGURES_FOR_BEST = 5  # the sweep draws the figures of this many best trials (and baselines)


def log_end_figures(
    tracker: StudyTracker,
    study: Any,
    summary: SweepSummary,
    split: Dataset,
    storage: str,
    n_jobs: int,
    runs: dict[int, str],
) -> None:
    """The figures of the best trials, the baselines and the chosen configuration (networks
    trained on ``split``) and Optuna's plots of the study (the parent's ``plots/``), each a job
    of its own for ``n_jobs`` processes (the sweep's warm workers): drawn one after another
    they would leave all but one core idle."""
    from joblib import Parallel, delayed

    from pipeline.analysis import STUDY_FIGURES

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(complete, key=value_of, reverse=study.directions[0].name == "MAXIMIZE")
    numbers = {t.number for t in ranked[:FIGURES_FOR_BEST]}
    numbers |= {m["trial"] for m in summary.test_metrics.values()}  # chosen and baselines
    drawn = [runs[n] for n in sorted(numbers) if n in runs]
    params = study_params(study)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [delayed(_trial_figures)(tracker.uri, run_id, split) for run_id in drawn]
        jobs += [
            delayed(_study_figure)(storage, study.study_name, params, tracker.objective, tmp, name)
            for name in STUDY_FIGURES
        ]
        Parallel(n_jobs=n_jobs, backend="loky")(jobs)
        tracker.client.log_artifacts(tracker.run_id, tmp, "plots")


def write_trial_figures(
    folder: Path, history: dict[str, list[float]], model: MLP, train_X: np.ndarray | None
) -> None:
    """A trial's three figures: learning curves (best epoch marked), the weight histogram
    (L1's exact zeros) and the last hidden layer's activations with and without dropout."""
    from pipeline.analysis import plots  # here, not at the top: workers log without drawing

    best = int(np.argmin(history["val_loss"])) + 1 if history.get("val_loss") else None
    plots.learning_curves(history, best).savefig(folder / "curves.png")
    plots.weight_histogram(model.weights_).savefig(folder / "weights.png")
    if train_X is not None and model.hidden:
        clean, dropped = model.hidden_activations(train_X)[-1]
        plots.activation_histogram(clean, dropped, model.keep_prob).savefig(
            folder / "activations.png"
        )


def _study_figure(
    storage: str, study_name: str, params: list[str], objective: str, folder: str, name: str
) -> None:
    """One of the study's plots, drawn in a worker process from the study's storage."""
    import optuna

    from pipeline.analysis import plots
    from pipeline.search._study import make_storage

    study = optuna.load_study(study_name=study_name, storage=make_storage(storage))
    plots.study_figures(study, params, Path(folder), objective, only=(name,))


def log_trial_figures(
    client: MlflowClient, runs: dict[int, str], numbers: list[int], split: Dataset
) -> list[int]:
    """The figures of trials ``numbers`` (trial number -> run id in ``runs``) that have a
    model (see :func:`_trial_figures`); returns the trials that got them."""
    uri = client.tracking_uri
    return [n for n in numbers if n in runs and _trial_figures(uri, runs[n], split)]


def _trial_figures(uri: str, run_id: str, split: Dataset) -> bool:
    """A trial's figures, drawn from its run's ``history.csv`` and ``model.npz`` and logged
    beside them, and the ensemble view of a network that drops units or weights (metric
    ``final_val_loss_mc``, by T) on ``split``, the study's first split: the one the saved
    network was trained and validated on. False for a trial without a model."""
    client = MlflowClient(uri)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        try:
            client.download_artifacts(run_id, "history.csv", tmp)
            client.download_artifacts(run_id, "model.npz", tmp)
        except Exception:  # not complete: no model to draw
            return False
        figures = folder / "figures"
        figures.mkdir()
        model = MLP.load(folder / "model.npz")
        write_trial_figures(figures, read_history(folder / "history.csv"), model, split.X_train)
        client.log_artifacts(run_id, str(figures))
        now = now_ms()  # one metric, by the number of stochastic passes T as its step
        ensemble = [Metric(MC_METRIC, v, now, t) for t, v in mc_curve(model, split).items()]
        log_metrics(client, run_id, ensemble)
    return True


def study_params(study: Any) -> list[str]:
    names: dict[str, None] = {}
    for t in study.get_trials(deepcopy=False):
        names |= dict.fromkeys(t.params)
    return list(names)


def figures_of(study: str, numbers: list[int], uri: str | None = None) -> list[int]:
    """Draw and log the figures of trials of ``study``; returns the trials that got them."""
    client = MlflowClient(tracking_uri(uri))
    experiment = client.get_experiment_by_name(study)
    run_id = find_parent_run(client, experiment.experiment_id) if experiment else None
    if experiment is None or run_id is None:
        raise ValueError(f"no study {study!r} in {mask_credentials(tracking_uri(uri))}")
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, SWEEP_RESOLVED, tmp)
        cfg = SweepConfig(**json.loads(Path(path).read_text()))
    d = load(cfg.data.name, seed=cfg.data.seed, **cfg.data.options)
    runs = trial_runs(client, experiment.experiment_id)
    split = splits_of(d, cfg.study.folds, cfg.study.seed)[0]
    return log_trial_figures(client, runs, numbers, split)
