"""MLflow writes of a trial: the store and the study's experiment, a child run per trial (params,
curves, final metrics, artifacts), and the helpers every run shares.

Everything goes through an explicit ``MlflowClient`` (no global active run), so worker processes
log their own trials without sharing state. The local default store is SQLite under
``mlruns/`` with artifacts beside it; the parent process creates it (and the experiment) before
any worker starts, because fresh SQLite stores race when several processes create them.
"""

from __future__ import annotations

import csv
import fcntl
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline.core import curve_start, is_number, readable_part
from pipeline.names import (
    BASELINE,
    COMPLETE,
    FAIL_REASON,
    FOLD_PREFIX,
    INTERRUPTED,
    INTERRUPTED_REASON,
    PRUNE_REASON,
    PRUNED,
    RETRY_OF,
    ROLE,
    ROLE_TRIAL,
    RUN_STATUS,
    RUNNING,
    STATE,
    STUDY,
    TRIAL,
)
from pipeline.results import TrialResult

SWEEP_RESOLVED = "sweep_resolved.json"  # the parent run's copy of the sweep, defaults filled in
EXPERIMENT_KIND = "mlflow.experimentKind"  # an experiment tag the UI reads to pick its first tab
BATCH = 1000  # MLflow takes at most 1000 metrics per log_batch call
ATTEMPT = "pipeline.attempt"  # a token per created run, to find it when the answer was cut off
CUT_OFF_TRIES = 3
T = TypeVar("T")


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


def now_ms() -> int:
    return int(time.time() * 1000)


def params_of(values: dict[str, Any]) -> list[Param]:
    """Hyperparameters as MLflow params (strings), floats at full precision (Python's shortest
    round-trip text): a configuration copied from the UI, or read back by ``analysis.runs``,
    rebuilds the trial's network exactly."""
    return [Param(k, _param_text(v)) for k, v in sorted(values.items())]


def _param_text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value) if isinstance(value, list | tuple) else str(value)


def _numbers(values: dict[str, Any], now: int) -> list[Metric]:
    """The numeric hyperparameters also as metrics of the same name and value as the param:
    the UI sorts and filters metrics as numbers (``metrics.keep_prob > 0.9``), params as
    text (1.2e-06 after 0.0095)."""
    return [Metric(k, float(v), now, 0) for k, v in sorted(values.items()) if is_number(v)]


def log_metrics(client: MlflowClient, run_id: str, metrics: Iterable[Metric]) -> None:
    metrics = list(metrics)
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + BATCH])


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


def cut_off(err: Exception) -> bool:
    """Whether an MLflow call failed because the connection broke mid-answer (the server
    killed while it replied). MLflow retries a refused connection for minutes by itself, but
    not an answer cut short: the request may or may not have been carried out."""
    cause = err.__cause__ or err.__context__
    return isinstance(
        cause, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError
    )


def again(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call`` tried again when its answer was cut off; for writes that may be repeated
    (MLflow keeps a param, tag, status or metric value logged twice as one)."""
    for _ in range(CUT_OFF_TRIES - 1):
        try:
            return call(*args, **kwargs)
        except MlflowException as err:
            if not cut_off(err):
                raise
            time.sleep(1.0)  # the server is on its way back; MLflow waits for it after this
    return call(*args, **kwargs)


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
        source_tags: dict[str, str] | None = None,
    ) -> None:
        self.uri = uri
        self.client = MlflowClient(uri)
        self.source_tags = source_tags or {}  # MLflow's mlflow.source.* and mlflow.user
        self.curve_points = curve_points
        self.searched = searched  # hyperparameters also logged as metrics
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.study = study
        self._artifact_uris: dict[str, str] = {}  # run id -> where its artifacts go

    def start(self, trial_number: int, user_attrs: dict[str, Any]) -> str:
        tags = {
            **self.source_tags,
            MLFLOW_PARENT_RUN_ID: self.parent_run_id,
            ROLE: ROLE_TRIAL,
            STUDY: self.study,
            TRIAL: str(trial_number),
            STATE: RUNNING,
        }
        for key in (BASELINE, RETRY_OF):
            if key in user_attrs:
                tags[key] = str(user_attrs[key])
        run = self._create_once(f"trial-{trial_number:04d}", tags)
        # kept for the artifacts: MLflow's log_artifacts would fetch the whole run back first
        self._artifact_uris[run.info.run_id] = run.info.artifact_uri
        return run.info.run_id

    def _create_once(self, name: str, tags: dict[str, str]) -> Run:
        """The trial's run, created once even when the server dies while it answers: the
        run may then exist without the answer, so it carries a token to be found again by."""
        tags = {**tags, ATTEMPT: uuid.uuid4().hex}
        for _ in range(CUT_OFF_TRIES - 1):
            try:
                return self.client.create_run(self.experiment_id, run_name=name, tags=tags)
            except MlflowException as err:
                if not cut_off(err):
                    raise
            found = self.client.search_runs(
                [self.experiment_id], f"tags.`{ATTEMPT}` = '{tags[ATTEMPT]}'"
            )
            if found:
                return found[0]
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags)

    def finish(self, run_id: str, result: TrialResult) -> None:
        """Params, curves (batched), final metrics, tags, artifacts; then the run's status. For
        a run :meth:`start` began."""
        now = now_ms()
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
        params = params_of(result.hyperparameters)
        again(self.client.log_batch, run_id, metrics=metrics[:BATCH], params=params, tags=tags)
        again(log_metrics, self.client, run_id, metrics[BATCH:])
        again(self._log_artifacts, run_id, result)
        again(self.client.set_terminated, run_id, status=RUN_STATUS[result.state])
        del self._artifact_uris[run_id]

    def _log_artifacts(self, run_id: str, result: TrialResult) -> None:
        """Every trial: its full per-epoch history (CSV); a complete trial also its weights.
        Figures are not made here: they cost more than a short trial's training, so the sweep
        draws them at its end for the best trials and the baselines (``search._figures``),
        and ``python -m pipeline figures`` for any other trial."""
        uri = self._artifact_uris[run_id]  # where the run's artifacts go, kept by start()
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            if result.history.get("epoch"):
                write_history(result.history, folder / "history.csv")
            if result.state == COMPLETE and result.model_path is not None:
                shutil.copyfile(result.model_path, folder / "model.npz")
            if any(folder.iterdir()):
                repository = get_artifact_repository(uri, tracking_uri=self.client.tracking_uri)
                repository.log_artifacts(tmp)


def read_history(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return {key: [float(row[i]) for row in rows[1:]] for i, key in enumerate(rows[0])}


def readable_length(history: dict[str, list[float]]) -> int:
    """How many epochs of the loss curves to log as MLflow metrics: the readable part of both
    (:func:`pipeline.core.readable_part`). A diverging trial's last epochs would otherwise
    set the scale of every chart in the UI; its reason is in ``fail_reason`` and
    ``history.csv`` keeps every epoch."""
    n = len(history.get("epoch", []))
    for key in ("train_loss", "val_loss"):
        if history.get(key):
            n = min(n, readable_part(history[key]))
    return n


def curve_steps(epochs: list[float], most: int, best_epoch: float | None = None) -> list[int]:
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
    now = now_ms()
    client.log_batch(
        run_id,
        metrics=[
            Metric(k, float(v), now, 0)
            for k, v in metrics.items()
            if v is not None and np.isfinite(v)
        ],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


def trial_runs(client: MlflowClient, experiment_id: str) -> dict[int, str]:
    """Trial number -> child run id (the newest, for a trial logged twice)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{ROLE}` = '{ROLE_TRIAL}'",
        max_results=50000,
        order_by=["attributes.start_time ASC"],
    )
    return {int(r.data.tags[TRIAL]): r.info.run_id for r in runs}
