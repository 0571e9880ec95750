"""The delivered network as an MLflow model: a ``pyfunc`` flavour with its signature and an input
example, logged to the study's parent run (the run page's "Logged models"), so that
``mlflow.pyfunc.load_model(uri).predict(frame)`` and ``mlflow models serve --env-manager local``
work on the data as the user has it: raw features in, labels or target units out.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from pipeline.core import MLP, Ensemble, Scaling, load_network

MODEL_NAME = "model"  # the logged model's name on the run page
NETWORK, SCALING = "network", "scaling"  # its artifacts


class NetworkModel(PythonModel):
    """The network (or ensemble) with the scaling of its data set: a data frame with the data
    set's feature columns in (the signature holds MLflow to it), class labels or target values
    out."""

    def load_context(self, context: Any) -> None:
        self.network = load_network(context.artifacts[NETWORK])
        scaling = json.loads(Path(context.artifacts[SCALING]).read_text())
        self.scaling = Scaling.from_dict(scaling)

    # no hints on the inputs: MLflow would read them as a schema of its own (the signature is one)
    def predict(self, context, model_input, params=None):
        X = pd.DataFrame(model_input)[list(self.scaling.features)].to_numpy(dtype=float)
        return self.scaling.outputs(self.network.predict(self.scaling.inputs(X)))


def raw_features(scaling: Scaling, X: np.ndarray) -> pd.DataFrame:
    """The network's inputs ``X`` back as the data set's raw features, named."""
    return pd.DataFrame(X * scaling.x_std + scaling.x_mean, columns=list(scaling.features))


def log_network_model(
    uri: str,
    run_id: str,
    network: MLP | Ensemble,
    scaling: Scaling,
    X_example: np.ndarray,
    register_as: str | None = None,
) -> str:
    """Log ``network`` as the model of run ``run_id`` in the store ``uri`` (registered as
    ``register_as`` when given) and return its URI, ``models:/<model id>``. ``X_example``, the
    network's inputs of a few rows, becomes the input example and the signature's source."""
    from mlflow import MlflowClient
    from mlflow.models import Model, infer_signature
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    example = raw_features(scaling, X_example[:5])
    signature = infer_signature(example, scaling.outputs(network.predict(X_example[:5])))
    client = MlflowClient(uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    # created here, in the run's experiment (MLflow would use the process's active one)
    params = {k: repr(v) for k, v in network.get_params().items()}  # full precision
    model_id = client.create_logged_model(
        experiment_id, MODEL_NAME, source_run_id=run_id, params=params
    ).model_id
    with tempfile.TemporaryDirectory() as tmp, _use_tracking_uri(uri):
        # Model.log, not pyfunc.log_model: only it takes a run other than the active one
        network.save(Path(tmp) / "network.npz")
        (Path(tmp) / "scaling.json").write_text(json.dumps(scaling.to_dict()))
        info = Model.log(
            None,  # artifact_path: MLflow 3 names logged models instead
            name=MODEL_NAME,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            model_id=model_id,
            python_model=NetworkModel(),
            artifacts={NETWORK: f"{tmp}/network.npz", SCALING: f"{tmp}/scaling.json"},
            signature=signature,
            input_example=example,
            registered_model_name=register_as,
            pip_requirements=_requirements(),
        )
    return str(info.model_uri)


def _requirements() -> list[str]:
    """What the model needs, pinned as installed here (given, not inferred: inferring them
    imports the model in a new process, seconds at the end of every sweep)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("regsweep", "mlflow", "numpy", "pandas")]
