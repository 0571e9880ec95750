"""Models read back from the store: the network a study chose, ready to ``predict``."""

from __future__ import annotations

from mlflow import MlflowClient

from pipeline.core import MLP
from pipeline.tracking import find_parent_run, tracking_uri


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
