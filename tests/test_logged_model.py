"""The delivered network as an MLflow model: logged to a real store, loaded back with
``mlflow.pyfunc``, fed raw features (as the user has them), answering in the data's own labels
and units; and served by ``mlflow models serve`` with the local environment."""

import json
import os
import subprocess
import sys
import urllib.request

import mlflow.pyfunc
import numpy as np
import pytest
from e2e import env, stop_group
from mlflow import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri
from tables import mixed_table

from benchmarks.loopback import free_ports, wait_for
from pipeline.core import MLP, Ensemble, load
from pipeline.tracking._model import log_network_model
from pipeline.tracking._parent import raw_rows


def _logged(tmp_path, name: str, **params):
    """``name``'s network (fitted briefly) logged to a run of a fresh store: the data set,
    the network, the store's URI and the model's URI. ``name`` is a bundled set, or
    ``table``: a table with text columns and gaps."""
    if name == "table":
        mixed_table(200).to_csv(tmp_path / "penguins.csv", index=False)
        d = load("csv", path=str(tmp_path / "penguins.csv"), target="species")
    else:
        d = load(name)
    task = d.task
    network = MLP(hidden=(16,), task=task, max_epochs=40, seed=0, **params)
    network.fit(d.X_train, d.y_train)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("models"))
    model_uri = log_network_model(uri, run.info.run_id, network, d.preprocessing, raw_rows(d))
    return d, network, uri, model_uri, run.info.run_id


def _raw(d, count=None):
    """The test rows as the user has them: the table's raw columns."""
    return d.table.frame.iloc[d.table.test[:count]]


def test_a_classifier_takes_raw_features_and_answers_in_the_data_sets_labels(tmp_path):
    d, network, uri, model_uri, run_id = _logged(tmp_path, "wine")
    with _use_tracking_uri(uri):
        model = mlflow.pyfunc.load_model(model_uri)
    frame = _raw(d)
    assert not np.allclose(frame.to_numpy(), d.X_test)  # raw, not the network's inputs
    predicted = model.predict(frame)
    labels = np.array(["class_0", "class_1", "class_2"])
    assert list(predicted) == list(labels[network.predict(d.X_test)])
    shuffled = frame[frame.columns[::-1]]  # columns are taken by name, not by position
    assert list(model.predict(shuffled)) == list(predicted)
    # the run page's "Logged models": the model's source run is the parent
    model_id = model_uri.removeprefix("models:/")
    logged = MlflowClient(uri).get_logged_model(model_id)
    assert logged.source_run_id == run_id and logged.status == "READY"
    run = MlflowClient(uri).get_run(run_id)
    assert logged.experiment_id == run.info.experiment_id  # the run's experiment's, not Default
    assert [m.model_id for m in run.outputs.model_outputs] == [model_id]
    assert logged.params["hidden"] == "(16,)" and float(logged.params["lr"]) == network.lr
    assert model.metadata.get_input_schema().input_names() == list(d.preprocessing.features)


def test_a_regressor_answers_in_the_targets_own_units(tmp_path):
    d, network, uri, model_uri, _ = _logged(tmp_path, "diabetes")
    with _use_tracking_uri(uri):
        model = mlflow.pyfunc.load_model(model_uri)
    predicted = np.ravel(model.predict(_raw(d)))
    scaled = np.ravel(network.predict(d.X_test))
    # the same errors, in the target's units: squared error scales by the target's variance
    y_raw = np.ravel(d.y_test) * d.preprocessing.y_std + d.preprocessing.y_mean
    mse_raw, mse_scaled = (
        np.mean((predicted - y_raw) ** 2),
        np.mean((scaled - np.ravel(d.y_test)) ** 2),
    )
    assert mse_raw == pytest.approx(mse_scaled * d.preprocessing.y_std**2, rel=1e-9)
    assert 25 < y_raw.mean() < 350  # diabetes progression, in its units, not standardised


def test_an_ensemble_is_logged_and_loaded_as_one_model_answering_with_its_average(tmp_path):
    d = load("wine")
    members = [
        MLP(hidden=(16,), task=d.task, max_epochs=40, seed=s).fit(d.X_train, d.y_train)
        for s in (1, 2, 3)
    ]
    ensemble = Ensemble(members)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("models"))
    model_uri = log_network_model(uri, run.info.run_id, ensemble, d.preprocessing, raw_rows(d))
    with _use_tracking_uri(uri):
        model = mlflow.pyfunc.load_model(model_uri)
    labels = np.array(["class_0", "class_1", "class_2"])
    averaged = np.mean([m.predict_proba(d.X_test) for m in members], axis=0).argmax(1)
    assert list(model.predict(_raw(d))) == list(labels[averaged])
    assert isinstance(model.unwrap_python_model().network, Ensemble)
    logged = client.get_logged_model(model_uri.removeprefix("models:/"))
    assert logged.params["members"] == "3"


@pytest.mark.slow
def test_mlflow_serves_the_model_answering_raw_rows_with_text_gaps_and_new_categories(tmp_path):
    d, network, uri, model_uri, _ = _logged(tmp_path, "table")
    (port,) = free_ports(1)
    venv_bin = os.path.dirname(sys.executable)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        # as from an activated .venv: MLflow starts the venv's uvicorn by name
        env=env() | {"MLFLOW_TRACKING_URI": uri, "PATH": f"{venv_bin}:{os.environ['PATH']}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def answers() -> bool:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/ping").status == 200
            except OSError:
                return False

        wait_for(answers, timeout=120, what="mlflow models serve")
        frame = _raw(d, 10).copy()
        frame.loc[frame.index[0], "island"] = "Atlantis"  # never seen in training
        frame.loc[frame.index[1], "bill_mm"] = None  # a gap: null in the JSON
        body = frame.to_json(orient="split", index=False)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=f'{{"dataframe_split": {body}}}'.encode(),
            headers={"Content-Type": "application/json"},
        )
        served = json.loads(urllib.request.urlopen(request).read())["predictions"]
        labels = np.array(d.preprocessing.classes)
        expected = labels[network.predict(d.preprocessing.inputs(frame))]
        assert served == list(expected) and set(served) <= {"Adelie", "Chinstrap"}
    finally:
        stop_group(server)
