"""MLflow: the store, one experiment per study, a parent run per study and a child run per trial.

Everything goes through an explicit ``MlflowClient`` (no global active run), so worker processes
log their own trials without sharing state. The local default store is SQLite under
``mlruns/`` with artifacts beside it; the parent process creates it (and the experiment) before
any worker starts, because fresh SQLite stores race when several processes create them.
"""

from __future__ import annotations

import csv
import fcntl
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from optuna.trial import TrialState

from pipeline import view
from pipeline.config import SweepConfig
from pipeline.curves import curve_start, readable_part
from pipeline.data import Dataset
from pipeline.folds import splits_of
from pipeline.locations import mask_credentials
from pipeline.mlp import MLP, is_number
from pipeline.names import (
    BASELINE,
    BEST,
    BEST_RUN_ID,
    CHOSEN,
    COMPLETE,
    FAIL_REASON,
    FAILED,
    FOLD_PREFIX,
    INTERRUPTED,
    INTERRUPTED_REASON,
    MC_METRIC,
    NOTE,
    PRUNE_REASON,
    PRUNED,
    REPEATS_SUFFIX,
    RERUN_OF,
    RERUN_SEED,
    RETRY_OF,
    ROLE,
    ROLE_RERUN,
    ROLE_STUDY,
    ROLE_TRIAL,
    RUN_STATUS,
    RUNNING,
    STATE,
    STUDY,
    STUDY_ANSWER,
    STUDY_DESCRIPTION,
    STUDY_DIRECTION,
    STUDY_LOG_SCALE,
    STUDY_METRIC,
    STUDY_SEARCHED,
    TRIAL,
    short,
)
from pipeline.objective import mc_curve
from pipeline.results import SweepSummary, TrialResult
from pipeline.store import find_parent_run, tracking_uri

# On a tracking server, MLflow prints two lines with links for every run it ends, after fetching
# the whole run back: an extra request per trial, and noise. The sweep prints its own link.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating tables..."
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in the console
SWEEP_RESOLVED = "sweep_resolved.json"  # the parent run's copy of the sweep, defaults filled in
EXPERIMENT_KIND = "mlflow.experimentKind"  # an experiment tag the UI reads to pick its first tab
BATCH = 1000  # MLflow takes at most 1000 metrics per log_batch call
FIGURES_FOR_BEST = 5  # the sweep draws the figures of this many best trials (and baselines)


def _artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store live beside its database, in ``artifacts/``."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def prepare_experiment(uri: str, name: str) -> str:
    """Create the store and the study's experiment when missing; return the experiment id.
    Two sweeps creating a fresh SQLite store at once race in MLflow's migrations, so its
    creation is serialised by a lock file beside it."""
    if not uri.startswith("sqlite:///"):
        return _prepare_experiment(uri, name)
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            return _prepare_experiment(uri, name)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prepare_experiment(uri: str, name: str) -> str:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    root = _artifact_root(uri)
    # a model-training experiment: the UI opens it on its runs, not on the GenAI overview
    tags = {EXPERIMENT_KIND: "custom_model_development"}
    return client.create_experiment(
        name, artifact_location=f"{root}/{name}" if root else None, tags=tags
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


SIGNIFICANT = 4  # digits of a float hyperparameter in MLflow (Optuna's trials keep them all)


def _params(values: dict[str, Any]) -> list[Param]:
    """Hyperparameters as MLflow params (strings), floats short (``5.809e-05``) so that the
    UI shows them whole rather than cut before their exponent."""
    return [Param(k, _param_text(v)) for k, v in sorted(values.items())]


def _param_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.{SIGNIFICANT}g}"
    return json.dumps(value) if isinstance(value, list | tuple) else str(value)


def _numbers(values: dict[str, Any], now: int) -> list[Metric]:
    """The numeric hyperparameters also as metrics of the same name and value as the param:
    the UI sorts and filters metrics as numbers (``metrics.keep_prob > 0.9``), params as
    text (1.2e-06 after 0.0095)."""
    return [
        Metric(k, float(_param_text(v)), now, 0) for k, v in sorted(values.items()) if is_number(v)
    ]


def _log_metrics(client: MlflowClient, run_id: str, metrics: Iterable[Metric]) -> None:
    metrics = list(metrics)
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + BATCH])


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# ---------------------------------------------------------------------------- parent run
def start_parent_run(
    client: MlflowClient,
    experiment_id: str,
    study: str,
    resolved: dict[str, Any],
    tags: dict[str, str],
) -> str:
    """The study's parent run, reused when the sweep is resumed. The resolved sweep is its
    artifact ``sweep_resolved.json``; a resume that changed it tags each changed key
    ``resumed_with.<key>`` and logs the new one in its place."""
    run_id = find_parent_run(client, experiment_id)
    if run_id is not None:
        client.update_run(run_id, status="RUNNING")
        before = _flatten("", _logged_sweep(client, run_id) or {})
        after = _flatten("", resolved)
        tags = tags | {
            f"resumed_with.{k}": str(v) for k, v in after.items() if k in before and before[k] != v
        }
    else:
        run = client.create_run(experiment_id, run_name=study, tags={ROLE: ROLE_STUDY})
        run_id = run.info.run_id
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    client.log_dict(run_id, resolved, SWEEP_RESOLVED)
    return run_id


def _logged_sweep(client: MlflowClient, run_id: str) -> dict[str, Any] | None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, SWEEP_RESOLVED, tmp)
        except Exception:  # a parent run that never got so far
            return None
        return json.loads(Path(path).read_text())


def close_interrupted_runs(
    client: MlflowClient, experiment_id: str, trial_number: int | None = None
) -> int:
    """Child runs left RUNNING by a sweep that died (or by a dead attempt at trial
    ``trial_number``) become KILLED, tagged ``interrupted``."""
    of_trial = "" if trial_number is None else f" and tags.`{TRIAL}` = '{trial_number}'"
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{ROLE}` = '{ROLE_TRIAL}' and attributes.status = 'RUNNING'"
        + of_trial,
        max_results=10000,
    )
    for run in runs:
        client.set_tag(run.info.run_id, STATE, INTERRUPTED)
        client.set_tag(run.info.run_id, FAIL_REASON, INTERRUPTED_REASON)
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(runs)


# ---------------------------------------------------------------------------- child runs
class TrialLogger:
    """Logs trials as child runs of the study's parent run; one per worker process."""

    def __init__(
        self,
        uri: str,
        experiment_id: str,
        parent_run_id: str,
        study: str,
        curve_points: int = 0,
        searched: tuple[str, ...] = (),
    ) -> None:
        self.client = MlflowClient(uri)
        self.curve_points = curve_points
        self.searched = searched  # hyperparameters also logged as metrics
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.study = study
        self._artifact_uris: dict[str, str] = {}  # run id -> where its artifacts go

    def start(self, trial_number: int, user_attrs: dict[str, Any]) -> str:
        tags = {
            MLFLOW_PARENT_RUN_ID: self.parent_run_id,
            ROLE: ROLE_TRIAL,
            STUDY: self.study,
            TRIAL: str(trial_number),
            STATE: RUNNING,
        }
        for key in (BASELINE, RETRY_OF):
            if key in user_attrs:
                tags[key] = str(user_attrs[key])
        run = self.client.create_run(
            self.experiment_id, run_name=f"trial-{trial_number:04d}", tags=tags
        )
        # kept for the artifacts: MLflow's log_artifacts would fetch the whole run back first
        self._artifact_uris[run.info.run_id] = run.info.artifact_uri
        return run.info.run_id

    def finish(self, run_id: str, result: TrialResult) -> None:
        """Params, curves (batched), final metrics, tags, artifacts; then the run's status. For
        a run :meth:`start` began."""
        now = _now_ms()
        history = result.history
        end = readable_length(history)
        start = curve_start(history, end)
        epochs = history.get("epoch", [])[start:end]
        best = result.metrics.get("best_epoch")
        steps = [start + i for i in curve_steps(epochs, self.curve_points, best)]
        curves = [
            Metric(key, float(history[key][i]), now, int(history["epoch"][i]))
            for key in ("train_loss", "val_loss", "val_accuracy")
            if key in history
            for i in steps
            if np.isfinite(history[key][i])
        ]
        finals = [Metric(k, float(v), now, 0) for k, v in result.metrics.items() if np.isfinite(v)]
        searched = {k: v for k, v in result.hyperparameters.items() if k in self.searched}
        finals += _numbers(searched, now)
        # with cross-validation, each fold's validation metrics, by fold as the step
        finals += [
            Metric(f"{FOLD_PREFIX}{k}", v, now, fold)
            for fold, m in enumerate(result.folds)
            for k, v in m.items()
            if k.startswith("final_val_") and np.isfinite(v)
        ]
        tags = [RunTag(STATE, result.state)]
        if result.reason:
            tags.append(
                RunTag(PRUNE_REASON if result.state == PRUNED else FAIL_REASON, result.reason)
            )
        if result.state == PRUNED:
            tags.append(RunTag("pruned", "true"))
            tags.append(RunTag("pruned_epoch", str(int(result.metrics["stopped_epoch"]))))
        metrics = finals + curves  # one call for params, tags and up to 1000 values
        self.client.log_batch(
            run_id, metrics=metrics[:BATCH], params=_params(result.hyperparameters), tags=tags
        )
        _log_metrics(self.client, run_id, metrics[BATCH:])
        self._log_artifacts(run_id, result)
        self.client.set_terminated(run_id, status=RUN_STATUS[result.state])

    def _log_artifacts(self, run_id: str, result: TrialResult) -> None:
        """Every trial: its full per-epoch history (CSV); a complete trial also its weights.
        Figures are not made here: they cost more than a short trial's training, so the sweep
        draws them at its end for the best trials and the baselines (:meth:`StudyTracker.
        finish`), and ``python -m pipeline figures`` for any other trial."""
        uri = self._artifact_uris.pop(run_id)  # where the run's artifacts go, kept by start()
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            if result.history.get("epoch"):
                write_history(result.history, folder / "history.csv")
            if result.state == COMPLETE and result.model_path is not None:
                shutil.copyfile(result.model_path, folder / "model.npz")
            if any(folder.iterdir()):
                repository = get_artifact_repository(uri, tracking_uri=self.client.tracking_uri)
                repository.log_artifacts(tmp)


def write_trial_figures(
    folder: Path, history: dict[str, list[float]], model: MLP, train_X: np.ndarray | None
) -> None:
    """A trial's three figures: learning curves (best epoch marked), the weight histogram
    (L1's exact zeros) and the last hidden layer's activations with and without dropout."""
    from pipeline import plots  # here, not at the top: workers log without drawing

    best = int(np.argmin(history["val_loss"])) + 1 if history.get("val_loss") else None
    plots.learning_curves(history, best).savefig(folder / "curves.png")
    plots.weight_histogram(model.weights_).savefig(folder / "weights.png")
    if train_X is not None and model.hidden:
        clean, dropped = model.hidden_activations(train_X)[-1]
        plots.activation_histogram(clean, dropped, model.keep_prob).savefig(
            folder / "activations.png"
        )


def read_history(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return {key: [float(row[i]) for row in rows[1:]] for i, key in enumerate(rows[0])}


def readable_length(history: dict[str, list[float]]) -> int:
    """How many epochs of the loss curves to log as MLflow metrics: the readable part of both
    (:func:`pipeline.curves.readable_part`). A diverging trial's last epochs would otherwise
    set the scale of every chart in the UI; its reason is in ``fail_reason`` and
    ``history.csv`` keeps every epoch."""
    n = len(history.get("epoch", []))
    for key in ("train_loss", "val_loss"):
        if history.get(key):
            n = min(n, readable_part(history[key]))
    return n


def curve_steps(epochs: list[int], most: int, best_epoch: float | None = None) -> list[int]:
    """Indices of the epochs whose values are logged as MLflow metrics: every epoch when there
    are at most ``most`` (or ``most`` is 0), else ``most`` evenly spread ones, always with the
    first, the last and the best epoch. MLflow stores metrics row by row, which costs as much
    as an epoch of a small network; the full history is in each run's ``history.csv``."""
    n = len(epochs)
    if most <= 0 or n <= most:
        return list(range(n))
    picks = set(np.linspace(0, n - 1, most).round().astype(int).tolist())
    if best_epoch and int(best_epoch) in epochs:
        picks.add(epochs.index(int(best_epoch)))
    return sorted(picks)


def write_history(history: dict[str, list[float]], path: Path) -> None:
    keys = list(history)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(keys)
        writer.writerows(zip(*(history[k] for k in keys), strict=True))


def log_summary(
    client: MlflowClient, run_id: str, metrics: dict[str, float], tags: dict[str, str] | None = None
) -> None:
    now = _now_ms()
    client.log_batch(
        run_id,
        metrics=[
            Metric(k, float(v), now, 0)
            for k, v in metrics.items()
            if v is not None and np.isfinite(v)
        ],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


# ---------------------------------------------------------------------------- the study
def _versions() -> dict[str, str]:
    import mlflow
    import optuna

    return {
        "numpy_version": np.__version__,
        "optuna_version": optuna.__version__,
        "mlflow_version": mlflow.__version__,
    }


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for k, v in value.items():
            flat |= _flatten(f"{prefix}.{k}" if prefix else str(k), v)
        return flat
    return {prefix: value}


@dataclass
class StudyTracker:
    """The study's experiment and parent run, from the parent process."""

    uri: str
    experiment_id: str
    run_id: str
    client: MlflowClient
    objective: str = "final_val_loss"

    @classmethod
    def open(
        cls, cfg: SweepConfig, storage: str, uri: str | None, sweep_file: str | None
    ) -> StudyTracker:
        uri = tracking_uri(uri or cfg.tracking.uri)
        experiment_id = prepare_experiment(uri, cfg.study.name)
        client = MlflowClient(uri)
        resolved = json.loads(mask_credentials(cfg.model_dump_json(exclude={"source"})))
        resolved["study"]["direction"] = cfg.direction
        tags = {
            STUDY: cfg.study.name,
            STUDY_METRIC: cfg.study.metric,
            STUDY_DIRECTION: cfg.direction,
            STUDY_SEARCHED: ",".join(cfg.search),
            STUDY_LOG_SCALE: ",".join(k for k, p in cfg.search.items() if getattr(p, "log", False)),
            STUDY_DESCRIPTION: cfg.study.description,
            "storage": mask_credentials(storage),
            "sampler": cfg.sampler.name,
            "pruner": cfg.pruner.name,
            "data": cfg.data.name,
            **_versions(),
        }
        if commit := git_commit():
            tags["git_commit"] = commit
        run_id = start_parent_run(client, experiment_id, cfg.study.name, resolved, tags)
        client.set_experiment_tag(experiment_id, *view.saved_view(cfg))
        tracker = cls(uri, experiment_id, run_id, client, cfg.objective)
        tracker.close_interrupted_runs()
        if sweep_file:  # as written, but with any password masked
            client.log_text(
                run_id, mask_credentials(Path(sweep_file).read_text()), Path(sweep_file).name
            )
        return tracker

    def close_interrupted_runs(self) -> int:
        return close_interrupted_runs(self.client, self.experiment_id)

    def _log_reruns(self, summary: SweepSummary) -> None:
        """Each re-run (a configuration trained again with one seed) as a run of its own
        under the parent, tagged ``pipeline.role = rerun``, with the trial it re-runs, its
        seed and whether its configuration was chosen: params, validation metrics, and test
        metrics for the chosen configuration and the baselines only."""
        chosen = summary.best.number if summary.best is not None else None
        baselines = {row["trial"]: row["baseline"] for row in summary.selection}
        if summary.reruns:  # a sweep run again after its budget re-runs them: replace, not add
            earlier = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{ROLE}` = '{ROLE_RERUN}'",
                max_results=50000,
            )
            for run in earlier:
                self.client.delete_run(run.info.run_id)
        now = _now_ms()
        for rerun in summary.reruns:
            tags = {
                MLFLOW_PARENT_RUN_ID: self.run_id,
                ROLE: ROLE_RERUN,
                STUDY: summary.study_name,
                RERUN_OF: str(rerun.trial),
                RERUN_SEED: str(rerun.seed),
                STATE: FAILED if rerun.reason else COMPLETE,
            }
            if baselines.get(rerun.trial):
                tags[BASELINE] = baselines[rerun.trial]
            if rerun.trial == chosen:
                tags[CHOSEN] = "true"
            if rerun.reason:
                tags[FAIL_REASON] = rerun.reason
            run = self.client.create_run(
                self.experiment_id,
                run_name=f"trial-{rerun.trial:04d}-seed-{rerun.seed}",
                tags=tags,
            )
            values = rerun.metrics | rerun.test
            self.client.log_batch(
                run.info.run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in values.items() if np.isfinite(v)],
                params=_params(rerun.hyperparameters),
            )
            status = RUN_STATUS[FAILED if rerun.reason else COMPLETE]
            self.client.set_terminated(run.info.run_id, status=status)

    def fail_trial_run(self, number: int, reason: str) -> None:
        """End the child run of a trial that an error stopped, FAILED with the error."""
        run_id = self.trial_runs().get(number)
        if run_id is not None:
            self.client.log_batch(run_id, tags=[RunTag(STATE, FAILED), RunTag(FAIL_REASON, reason)])
            self.client.set_terminated(run_id, status=RUN_STATUS[FAILED])

    def trial_runs(self) -> dict[int, str]:
        return trial_runs(self.client, self.experiment_id)

    def finish(
        self, study: Any, summary: SweepSummary, split: Dataset, storage: str, n_jobs: int = 1
    ) -> None:
        """Summary metrics, the trials table, test metrics, the best model, Optuna's plots and
        the figures of the best trials, the baselines and the chosen configuration (drawn by
        ``n_jobs`` processes, of the networks trained on ``split``); then the parent run's
        status (KILLED when the sweep was interrupted, FAILED when an error stopped it)."""
        started = time.perf_counter()
        states = summary.states
        metrics = {
            "n_complete": states[COMPLETE],
            "n_pruned": states[PRUNED],
            "n_failed": states[FAILED],
            "wall_time": summary.wall_seconds,
            "train_time": summary.compute_seconds,
            "workers_time": summary.parallel_seconds,  # the workers' phase, wall
            "tracking_time": summary.tracking_seconds,  # MLflow logging inside the workers
            "setup_time": summary.setup_seconds,  # up to the workers' phase
            "evaluation_time": summary.evaluation_seconds,  # re-runs, test, peer
            "n_jobs": summary.n_jobs,
        }
        if summary.best is not None:
            metrics[f"best.{self.objective}"] = summary.best.value
            metrics["best.trial"] = summary.best.number
        runs = self.trial_runs()
        for name, m in summary.test_metrics.items():
            numbers = {k: v for k, v in m.items() if isinstance(v, float)}
            metrics |= {f"{name}.{k}": v for k, v in numbers.items()}
            repeats = [  # seed by seed, in the same order for every configuration
                Metric(f"{name}{REPEATS_SUFFIX}", loss, _now_ms(), k)
                for k, loss in enumerate(m.get("test_losses", []))
                if np.isfinite(loss)
            ]
            _log_metrics(self.client, self.run_id, repeats)
            run_id = runs.get(m["trial"])
            if run_id:  # test metrics sit apart, under test_*, and never feed selection
                tested = {k: v for k, v in m.items() if k.startswith("test_")}
                log_summary(
                    self.client, run_id, {k: v for k, v in tested.items() if isinstance(v, float)}
                )
        for name, m in summary.peers.items():  # scikit-learn's MLP, beside the study's
            metrics |= {f"{name}.{k}": v for k, v in m.items()}
        best_run = runs.get(summary.best.number) if summary.best is not None else None
        tags = {NOTE: study_note(summary, self.experiment_id, best_run, self.objective)}
        if summary.answer:
            tags[STUDY_ANSWER] = "\n".join(summary.answer)
        self._log_reruns(summary)
        if best_run is not None:
            tags[BEST_RUN_ID] = best_run
            self.client.set_tag(best_run, BEST, "true")  # the best trial, marked in its run
        log_summary(self.client, self.run_id, metrics, tags=tags)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        ranked = sorted(complete, key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")
        numbers = {t.number for t in ranked[:FIGURES_FOR_BEST]}
        numbers |= {m["trial"] for m in summary.test_metrics.values()}  # chosen and baselines
        drawn = [runs[n] for n in sorted(numbers) if n in runs]
        self._log_figures(study, drawn, split, storage, n_jobs)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            if summary.selection:
                import pandas as pd

                pd.DataFrame(summary.selection).to_csv(folder / "selection.csv", index=False)
            table = study.trials_dataframe()
            table.to_csv(folder / "trials.csv", index=False)
            _as_text(table).to_parquet(folder / "trials.parquet", index=False)
            best = summary.test_metrics.get("best")
            if best is not None:
                (folder / "best_model").mkdir()
                best["model"].save(folder / "best_model" / "model.npz")
            self.client.log_artifacts(self.run_id, tmp)
        log_summary(self.client, self.run_id, {"finish_time": time.perf_counter() - started})
        status = "FAILED" if summary.errors else "KILLED" if summary.interrupted else "FINISHED"
        self.client.set_terminated(self.run_id, status=status)

    def _log_figures(
        self, study: Any, run_ids: list[str], split: Dataset, storage: str, n_jobs: int
    ) -> None:
        """The figures of the trials of ``run_ids`` and Optuna's plots of the study (the
        parent's ``plots/``), each a job of its own for ``n_jobs`` processes (the sweep's warm
        workers): drawn one after another they would leave all but one core idle."""
        from joblib import Parallel, delayed

        from pipeline.plots import STUDY_FIGURES

        params = study_params(study)
        with tempfile.TemporaryDirectory() as tmp:
            jobs = [delayed(_trial_figures)(self.uri, run_id, split) for run_id in run_ids]
            jobs += [
                delayed(_study_figure)(storage, study.study_name, params, self.objective, tmp, name)
                for name in STUDY_FIGURES
            ]
            Parallel(n_jobs=n_jobs, backend="loky")(jobs)
            self.client.log_artifacts(self.run_id, tmp, "plots")


def _study_figure(
    storage: str, study_name: str, params: list[str], objective: str, folder: str, name: str
) -> None:
    """One of the study's plots, drawn in a worker process from the study's storage."""
    import optuna

    from pipeline import plots
    from pipeline.study import make_storage

    study = optuna.load_study(study_name=study_name, storage=make_storage(storage))
    plots.study_figures(study, params, Path(folder), objective, only=(name,))


def _as_text(table: Any) -> Any:
    """Dict and list cells (Optuna's system attributes, e.g. an empty ``fixed_params``) as
    JSON text: Parquet cannot store a struct with no field."""
    table = table.copy()
    for column in table.columns:
        if table[column].map(lambda v: isinstance(v, dict | list | tuple)).any():
            table[column] = table[column].map(
                lambda v: json.dumps(v, default=str) if isinstance(v, dict | list | tuple) else v
            )
    return table


def trial_runs(client: MlflowClient, experiment_id: str) -> dict[int, str]:
    """Trial number -> child run id (the newest, for a trial logged twice)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{ROLE}` = '{ROLE_TRIAL}'",
        max_results=50000,
        order_by=["attributes.start_time ASC"],
    )
    return {int(r.data.tags[TRIAL]): r.info.run_id for r in runs}


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
        now = _now_ms()  # one metric, by the number of stochastic passes T as its step
        ensemble = [Metric(MC_METRIC, v, now, t) for t, v in mc_curve(model, split).items()]
        _log_metrics(client, run_id, ensemble)
    return True


def study_note(
    summary: SweepSummary, experiment_id: str, best_run: str | None, objective: str
) -> str:
    """The parent run's description (MLflow renders it as markdown above the run): the
    answer at a glance, with links to the best trial's run and to the study's view."""
    states = summary.states
    trials = f"[{summary.n_trials} trials]({view.runs_link('', experiment_id).lstrip('/')})"
    lines = [
        f"**{summary.study_name}**: {states[COMPLETE]} complete, {states[PRUNED]} pruned, "
        f"{states[FAILED]} failed of {trials} (best first)."
    ]
    best = summary.best
    if best is not None:
        settings = ", ".join(f"{k} = {short(v)}" for k, v in best.params.items())
        link = f"[trial {best.number}](#/experiments/{experiment_id}/runs/{best_run})"
        value = f"{objective} {short(best.value)}"
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


def study_params(study: Any) -> list[str]:
    names: dict[str, None] = {}
    for t in study.get_trials(deepcopy=False):
        names |= dict.fromkeys(t.params)
    return list(names)


def figures_of(study: str, numbers: list[int], uri: str | None = None) -> list[int]:
    """Draw and log the figures of trials of ``study``; returns the trials that got them."""
    from pipeline.config import SweepConfig
    from pipeline.data import load

    client = MlflowClient(tracking_uri(uri))
    experiment = client.get_experiment_by_name(study)
    run_id = find_parent_run(client, experiment.experiment_id) if experiment else None
    if run_id is None:
        raise ValueError(f"no study {study!r} in {mask_credentials(tracking_uri(uri))}")
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, SWEEP_RESOLVED, tmp)
        cfg = SweepConfig(**json.loads(Path(path).read_text()))
    d = load(cfg.data.name, seed=cfg.data.seed, **cfg.data.options)
    runs = trial_runs(client, experiment.experiment_id)
    split = splits_of(d, cfg.study.folds, cfg.study.seed)[0]
    return log_trial_figures(client, runs, numbers, split)


def load_best_model(study: str, uri: str | None = None) -> MLP:
    """The best model of a study, as logged to its parent run, ready to ``predict``."""
    import mlflow.artifacts

    client = MlflowClient(tracking_uri(uri))
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        raise ValueError(f"no MLflow experiment named {study!r} in {tracking_uri(uri)}")
    run_id = find_parent_run(client, experiment.experiment_id)
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="best_model/model.npz", tracking_uri=tracking_uri(uri)
    )
    return MLP.load(path)
