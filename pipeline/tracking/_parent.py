"""MLflow writes of a study: its parent run (the resolved sweep, tags, a resume's changes), and at
the end its summary metrics, test metrics, note, re-runs, tables and chosen model.

The parent process alone writes here; what it writes is handed to it as plain records
(:mod:`pipeline.results`) and text (the note), so this module draws nothing and computes
nothing of its own.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID

from pipeline.config import SweepConfig, mask_credentials, pareto_trials
from pipeline.core import Dataset
from pipeline.names import (
    ABLATION,
    BASELINE,
    BEST,
    BEST_RUN_ID,
    CHOSEN,
    COMPLETE,
    FAIL_REASON,
    FAILED,
    MODEL_URI,
    NOTE,
    PARETO,
    PRUNED,
    REPEATS_SUFFIX,
    RERUN_OF,
    RERUN_SEED,
    ROLE,
    ROLE_RERUN,
    ROLE_STUDY,
    RUN_STATUS,
    STATE,
    STUDY,
    STUDY_ANSWER,
    STUDY_BUDGET,
    STUDY_DESCRIPTION,
    STUDY_DIRECTION,
    STUDY_DIRECTIONS,
    STUDY_LOG_SCALE,
    STUDY_METRIC,
    STUDY_OBJECTIVES,
    STUDY_SEARCHED,
)
from pipeline.results import SweepSummary, value_of
from pipeline.tracking import _view as view
from pipeline.tracking._runs import (
    SWEEP_RESOLVED,
    close_interrupted_runs,
    log_metrics,
    log_summary,
    now_ms,
    params_of,
    prepare_experiment,
    trial_runs,
)
from pipeline.tracking._store import find_parent_run, tracking_uri


def source_tags() -> dict[str, str]:
    """MLflow's standard tags of where a run comes from, by MLflow's own context resolution:
    ``mlflow.source.name`` (the program), ``mlflow.source.type``, ``mlflow.source.git.commit``
    (in a git checkout) and ``mlflow.user``, so that the UI's Source and User columns work."""
    from mlflow.tracking.context.registry import resolve_tags

    wanted = ("mlflow.source.", "mlflow.user")
    return {k: v for k, v in resolve_tags().items() if k.startswith(wanted)}


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


def _versions() -> dict[str, str]:
    import mlflow
    import optuna

    return {
        "numpy_version": np.__version__,
        "optuna_version": optuna.__version__,
        "mlflow_version": mlflow.__version__,
    }


def _system_monitor(uri: str, run_id: str) -> Any:
    """MLflow's monitor of this machine, started, logging ``system/*`` metrics to the run."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=2, tracking_uri=uri)
    monitor.start()
    return monitor


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
    source: dict[str, str] = field(default_factory=dict)  # MLflow's source tags, every run's
    monitor: Any = None  # MLflow's system metrics monitor of the parent run, when asked for

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
            STUDY_OBJECTIVES: ",".join(cfg.objective_keys),
            STUDY_DIRECTIONS: ",".join(cfg.directions),
            STUDY_SEARCHED: ",".join(cfg.search),
            STUDY_LOG_SCALE: ",".join(k for k, p in cfg.search.items() if getattr(p, "log", False)),
            STUDY_DESCRIPTION: cfg.study.description,
            STUDY_BUDGET: str(cfg.study.n_trials),
            "storage": mask_credentials(storage),
            "sampler": cfg.sampler.name,
            "pruner": cfg.pruner.name,
            "data": cfg.data.name,
            **_versions(),
        }
        source = source_tags()
        run_id = start_parent_run(client, experiment_id, cfg.study.name, resolved, tags | source)
        client.set_experiment_tag(experiment_id, *view.saved_view(cfg))
        if cfg.multi:
            client.set_experiment_tag(experiment_id, *view.pareto_view(cfg))
        tracker = cls(uri, experiment_id, run_id, client, cfg.objective, source)
        tracker.close_interrupted_runs()
        if cfg.tracking.system_metrics:
            tracker.monitor = _system_monitor(uri, run_id)
        if sweep_file:  # as written, but with any password masked
            client.log_text(
                run_id, mask_credentials(Path(sweep_file).read_text()), Path(sweep_file).name
            )
        return tracker

    def log_data(self, dataset: Dataset) -> None:
        """The data set as the parent run's inputs, so that MLflow's Datasets column and
        lineage show what was trained, validated and tested on (logged again on a resume:
        MLflow keeps one of each): a table read from a file as itself (its source, digest and
        schema) and as its three splits' raw rows; a generated set as its splits' arrays. The
        columns' kinds and what became of them go beside, as ``data/columns.json`` and
        ``data/columns.txt``."""
        from mlflow.entities import DatasetInput, InputTag

        inputs = [
            DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
            for context, entity in _data_inputs(dataset)
        ]
        self.client.log_inputs(self.run_id, datasets=inputs)
        if dataset.preprocessing is not None:
            plan = dataset.preprocessing.plan
            notes = dataset.table.notes if dataset.table is not None else ()
            self.client.log_dict(self.run_id, plan.to_dict(), "data/columns.json")
            lines = "\n".join([*plan.lines(), *notes]) + "\n"
            self.client.log_text(self.run_id, lines, "data/columns.txt")

    def close_interrupted_runs(self) -> int:
        return close_interrupted_runs(self.client, self.experiment_id)

    def _log_reruns(self, summary: SweepSummary) -> None:
        """Each re-run (a configuration trained again with one seed) as a run of its own
        under the parent, tagged ``pipeline.role = rerun``, with the trial it re-runs, its
        seed and whether its configuration was chosen: params, validation metrics, and test
        metrics for the chosen configuration and the baselines only."""
        chosen = summary.best.number if summary.best is not None else None
        baselines = {row["trial"]: row["baseline"] for row in summary.selection}
        if summary.reruns or summary.ablation:  # a sweep ended again: replace, not add
            earlier = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{ROLE}` = '{ROLE_RERUN}'",
                max_results=50000,
            )
            for run in earlier:
                self.client.delete_run(run.info.run_id)
        for rerun in summary.reruns:
            tags = {BASELINE: baselines.get(rerun.trial, "")}
            if rerun.trial == chosen:
                tags[CHOSEN] = "true"
            self._log_rerun(summary, rerun, tags, f"trial-{rerun.trial:04d}-seed-{rerun.seed}")
        for switched in summary.ablation:  # the chosen configuration, one regulariser off
            for rerun in switched.runs:
                name = f"trial-{rerun.trial:04d}-seed-{rerun.seed}-no-{switched.key}"
                self._log_rerun(summary, rerun, {ABLATION: switched.key}, name)

    def _log_rerun(
        self, summary: SweepSummary, rerun: Any, tags: dict[str, str], name: str
    ) -> None:
        tags = {
            **self.source,
            MLFLOW_PARENT_RUN_ID: self.run_id,
            ROLE: ROLE_RERUN,
            STUDY: summary.study_name,
            RERUN_OF: str(rerun.trial),
            RERUN_SEED: str(rerun.seed),
            STATE: FAILED if rerun.reason else COMPLETE,
            **{k: v for k, v in tags.items() if v},
        }
        if rerun.reason:
            tags[FAIL_REASON] = rerun.reason
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        values = rerun.metrics | rerun.test
        self.client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, float(v), now_ms(), 0) for k, v in values.items() if np.isfinite(v)],
            params=params_of(rerun.hyperparameters),
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
        self,
        study: Any,
        summary: SweepSummary,
        note: str,
        runs: dict[int, str],
        dataset: Dataset,
        register_as: str | None = None,
    ) -> None:
        """Summary metrics, test metrics, the note (``note``, markdown), the answer, the
        re-runs, the trials table and the delivered model (an MLflow model taking ``dataset``'s
        raw features, registered as ``register_as`` when given), with ``runs`` the trials' runs
        (trial number -> run id). The figures are the sweep's to draw (:mod:`pipeline.search`);
        :meth:`end` sets the parent run's status after them."""
        metrics = self._summary_metrics(summary) | self._test_metrics(summary, runs)
        for name, m in summary.peers.items():  # scikit-learn's MLP, beside the study's
            metrics |= {f"{name}.{k}": v for k, v in m.items()}
        best_run = runs.get(summary.best.number) if summary.best is not None else None
        tags = {NOTE: note}
        if summary.answer:
            tags[STUDY_ANSWER] = "\n".join(summary.answer)
        self._log_reruns(summary)
        if best_run is not None:
            tags[BEST_RUN_ID] = best_run
            self.client.set_tag(best_run, BEST, "true")  # the best trial, marked in its run
        if len(study.directions) > 1:  # the front, marked in its runs (the saved view's filter)
            front = [runs[t.number] for t in pareto_trials(study) if t.number in runs]
            for run_id in front:
                self.client.set_tag(run_id, PARETO, "true")
            metrics["pareto.size"] = float(len(front))
        delivered = summary.delivered
        if delivered:  # the model a user takes away, and its test figures, evaluated once
            metrics |= {
                f"delivered.{k}": float(v)
                for k, v in delivered.items()
                if k.startswith("test_") or k == "epochs"
            }
            tags["delivered.how"] = delivered["how"]
        for switched in summary.ablation:  # the answer, measured: a table in metrics and tags
            row = switched.row(self.objective)
            prefix = f"{ABLATION}.{switched.key}"
            metrics[f"{prefix}.val_change"] = row[f"{self.objective} change"]
            metrics[f"{prefix}.val_change_se"] = row[f"{self.objective} change se"]
            metrics[f"{prefix}.test_change"] = row["test_loss change"]
            metrics[f"{prefix}.test_change_se"] = row["test_loss change se"]
            metrics[f"{prefix}.seeds"] = row["seeds"]
            tags[f"{prefix}.verdict"] = switched.verdict
        if delivered and delivered.get("preprocessing") is not None:
            from pipeline.tracking._model import log_network_model

            tags[MODEL_URI] = log_network_model(
                self.uri,
                self.run_id,
                delivered["model"],
                delivered["preprocessing"],
                raw_rows(dataset),
                register_as,
            )
        log_summary(self.client, self.run_id, metrics, tags=tags)
        self._log_tables(study, summary)

    def end_killed(self) -> None:
        """The parent run ended KILLED: a sweep stopped before its end (the next run of the
        same command sets it running again)."""
        self._stop_monitor()
        self.client.set_terminated(self.run_id, status="KILLED")

    def _stop_monitor(self) -> None:
        if self.monitor is not None:
            self.monitor.finish()  # its last samples, logged
            self.monitor = None

    def end(self, summary: SweepSummary, finish_seconds: float) -> None:
        """The time the end's logging and figures took (``finish_time``), then the parent run's
        status: KILLED when the sweep was interrupted, FAILED when an error stopped it."""
        log_summary(self.client, self.run_id, {"finish_time": finish_seconds})
        self._stop_monitor()
        status = "FAILED" if summary.errors else "KILLED" if summary.interrupted else "FINISHED"
        self.client.set_terminated(self.run_id, status=status)

    def _summary_metrics(self, summary: SweepSummary) -> dict[str, float]:
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
            "evaluation_time": summary.evaluation_seconds,  # re-runs, test, ablation, peer
            **{  # its parts: "choice and test" -> evaluation_time.choice_and_test
                f"evaluation_time.{k.replace(' ', '_')}": v for k, v in summary.end_seconds.items()
            },
            "n_jobs": summary.n_jobs,
        }
        if summary.best is not None:
            metrics[f"best.{self.objective}"] = value_of(summary.best)
            metrics["best.trial"] = summary.best.number
        return metrics

    def _test_metrics(self, summary: SweepSummary, runs: dict[int, str]) -> dict[str, float]:
        """The parent's test metrics of the chosen configuration and the baselines (their
        test loss seed by seed too); each also on its trial's run, under ``test_*``."""
        metrics: dict[str, float] = {}
        for name, m in summary.test_metrics.items():
            numbers = {k: v for k, v in m.items() if isinstance(v, float)}
            metrics |= {f"{name}.{k}": v for k, v in numbers.items()}
            repeats = [  # seed by seed, in the same order for every configuration
                Metric(f"{name}{REPEATS_SUFFIX}", loss, now_ms(), k)
                for k, loss in enumerate(m.get("test_losses", []))
                if np.isfinite(loss)
            ]
            log_metrics(self.client, self.run_id, repeats)
            run_id = runs.get(m["trial"])
            if run_id:  # test metrics sit apart, under test_*, and never feed selection
                tested = {k: v for k, v in m.items() if k.startswith("test_")}
                log_summary(
                    self.client, run_id, {k: v for k, v in tested.items() if isinstance(v, float)}
                )
        return metrics

    def _log_tables(self, study: Any, summary: SweepSummary) -> None:
        """The selection table and the trials table (CSV and parquet)."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            if summary.selection:
                import pandas as pd

                pd.DataFrame(summary.selection).to_csv(folder / "selection.csv", index=False)
            table = study.trials_dataframe()
            table.to_csv(folder / "trials.csv", index=False)
            _as_text(table).to_parquet(folder / "trials.parquet", index=False)
            self.client.log_artifacts(self.run_id, tmp)


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


def raw_rows(dataset: Dataset) -> pd.DataFrame:
    """A few training rows as the user has them: the table's raw columns, or a generated
    set's features as given."""
    if dataset.table is not None:
        return dataset.table.frame.iloc[dataset.table.train[:5]]
    assert dataset.preprocessing is not None
    return pd.DataFrame(dataset.X_train[:5], columns=list(dataset.preprocessing.features))


def _data_inputs(dataset: Dataset) -> list[tuple[str, Any]]:
    """(context, MLflow dataset entity) of each input: the table and its splits' raw rows, or
    the splits' arrays."""
    from mlflow.data.numpy_dataset import from_numpy
    from mlflow.data.pandas_dataset import from_pandas

    table = dataset.table
    if table is None or not table.source:
        splits = {
            "train": (dataset.X_train, dataset.y_train),
            "validation": (dataset.X_val, dataset.y_val),
            "test": (dataset.X_test, dataset.y_test),
        }
        return [
            (split, from_numpy(X, targets=y, name=f"{dataset.name}-{split}")._to_mlflow_entity())
            for split, (X, y) in splits.items()
        ]
    rows = table.frame.assign(**{table.target: _raw_target(dataset)})  # as read, with a target
    rows_of = {"train": table.train, "validation": table.val, "test": table.test}
    parts = {"table": rows} | {split: rows.iloc[index] for split, index in rows_of.items()}
    found = []
    with warnings.catch_warnings():  # MLflow registers its local source class twice, and says so
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
        for context, part in parts.items():
            name = dataset.name if context == "table" else f"{dataset.name}-{context}"
            entity = from_pandas(part, source=table.source, targets=table.target, name=name)
            found.append((context, entity._to_mlflow_entity()))
    return found


def _raw_target(dataset: Dataset) -> np.ndarray:
    """The target as given: the labels, or the values in their own units."""
    assert dataset.table is not None and dataset.preprocessing is not None
    y = dataset.table.y
    return dataset.preprocessing.outputs(y if dataset.preprocessing.classes else y.ravel())
