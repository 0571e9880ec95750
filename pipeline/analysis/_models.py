"""Models read back from the store: the network a study delivered, ready to ``predict``."""

from __future__ import annotations

from mlflow import MlflowClient

from pipeline.core import MLP, Ensemble
from pipeline.names import MODEL_URI
from pipeline.tracking import find_parent_run, tracking_uri


def best_model_uri(study: str, uri: str | None = None) -> str:
    """The URI (``models:/<id>``) of the MLflow model a study delivered, for
    ``mlflow.pyfunc.load_model`` (raw features in, labels or target values out)."""
    client = MlflowClient(tracking_uri(uri))
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        raise ValueError(f"no MLflow experiment named {study!r} in {tracking_uri(uri)}")
    run_id = find_parent_run(client, experiment.experiment_id)
    model_uri = client.get_run(run_id).data.tags.get(MODEL_URI) if run_id else None
    if model_uri is None:
        raise ValueError(f"study {study!r} has delivered no model yet (its sweep has not ended)")
    return model_uri


def load_best_model(study: str, uri: str | None = None) -> MLP | Ensemble:
    """The network (or, with ``deliver = "ensemble"``, the ensemble) a study delivered (the
    MLflow model at :func:`best_model_uri`), ready to ``predict`` on inputs scaled as the
    study's splits are."""
    import mlflow.pyfunc
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(tracking_uri(uri)):
        model = mlflow.pyfunc.load_model(best_model_uri(study, uri))
    return model.unwrap_python_model().network
