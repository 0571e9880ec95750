"""The delivered network as an MLflow model: a ``pyfunc`` flavour logged from code
(:mod:`pipeline.tracking.model_code`) with its preprocessing, its signature and an input
example, logged to the study's parent run (the run page's "Logged models"), so that
``mlflow.pyfunc.load_model(uri).predict(frame)`` and ``mlflow models serve --env-manager local``
work on the data as the user has it: the table's raw columns in (numbers, text, booleans,
gaps), labels or target units out.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from pipeline.core import MLP, Ensemble, Preprocessing
from pipeline.tracking import model_code

MODEL_NAME = "model"  # the logged model's name on the run page


def signature_of(preprocessing: Preprocessing, example: pd.DataFrame, output: object) -> object:
    """The model's signature: each input column by name, text for a category, any value for
    a number (a user's frame may hold it as integers, floats or objects; the preprocessing
    reads it as a number), optional where training saw gaps; ``predict_method`` a parameter."""
    from mlflow.models import infer_signature
    from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    plan = preprocessing.plan
    columns: list[ColSpec | TensorSpec] = [
        ColSpec(
            "string" if c in plan.categories else AnyType(),
            c,
            required=c not in plan.gaps,
        )
        for c in plan.inputs
    ]
    signature = infer_signature(example, output)
    signature.inputs = Schema(columns)
    signature.params = ParamSchema([ParamSpec("predict_method", "string", model_code.PREDICT)])
    return signature


def log_network_model(
    uri: str,
    run_id: str,
    network: MLP | Ensemble,
    preprocessing: Preprocessing,
    example: pd.DataFrame,
    register_as: str | None = None,
) -> str:
    """Log ``network`` after ``preprocessing`` as the model of run ``run_id`` in the store
    ``uri`` (registered as ``register_as`` when given) and return its URI, ``models:/<model
    id>``. ``example``, a few raw rows of the table, becomes the input example."""
    from mlflow import MlflowClient
    from mlflow.models import Model
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    example = example[list(preprocessing.features)].head(5)
    output = preprocessing.outputs(network.predict(preprocessing.inputs(example)))
    signature = signature_of(preprocessing, example, output)
    client = MlflowClient(uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    # created here, in the run's experiment (MLflow would use the process's active one)
    params = {k: repr(v) for k, v in network.get_params().items()}  # full precision
    model_id = client.create_logged_model(
        experiment_id, MODEL_NAME, source_run_id=run_id, params=params
    ).model_id
    with tempfile.TemporaryDirectory() as tmp, _use_tracking_uri(uri):
        network.save(Path(tmp) / "network.npz")
        (Path(tmp) / model_code.PREPROCESSING).mkdir()
        preprocessing.save(Path(tmp) / model_code.PREPROCESSING)
        artifacts = {
            model_code.NETWORK: f"{tmp}/network.npz",
            model_code.PREPROCESSING: f"{tmp}/{model_code.PREPROCESSING}",
        }
        # Model.log, not pyfunc.log_model: only it takes a run other than the active one
        info = Model.log(
            None,  # artifact_path: MLflow 3 names logged models instead
            name=MODEL_NAME,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            model_id=model_id,
            python_model=model_code.__file__,
            artifacts=artifacts,
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

    names = ("regsweep", "mlflow", "numpy", "pandas", "scikit-learn")
    return [f"{name}=={version(name)}" for name in names]
