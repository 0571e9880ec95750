"""A user's own table, as it comes, through ``init`` and ``sweep`` (real worker processes, real
stores), then the delivered MLflow model on the very frame ``pd.read_csv`` gives back and on
new rows with an unseen category and gaps."""

import numpy as np
import pandas as pd
import pytest
from e2e import cli_in_process, client, runs, sweep, uri_of
from mlflow.tracking._tracking_service.utils import _use_tracking_uri
from tables import mixed_table

from pipeline import analysis
from pipeline.core import load
from pipeline.names import MODEL_URI


@pytest.mark.slow
def test_init_and_sweep_on_a_raw_table_deliver_a_model_that_takes_the_users_frame(tmp_path):
    import mlflow.pyfunc

    mixed_table(240, seed=3).to_csv(tmp_path / "penguins.tsv", sep="\t", index=False)
    written = cli_in_process(tmp_path, "init", "penguins.tsv", "--target", "species")
    assert written.returncode == 0, written.stderr
    said = written.stdout
    assert 'task = "classification"  # inferred' in said and 'sep = "\\t"' in said
    assert "island: categorical, one-hot" in said and "id: identifier, dropped" in said
    assert "bill_mm: numeric, scaled (" in said and "missing)" in said
    # the template, made cheap enough for a test: what is checked does not depend on its size
    cheap = ["study.folds=3", "study.repeats=2", "fixed.max_epochs=20", "study.peer=false"]
    done = sweep(
        tmp_path,
        "--n-trials",
        "4",
        *[a for c in cheap for a in ("--set", c)],
        sweep_file=tmp_path / "sweeps" / "penguins.toml",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    parent, _ = runs(tmp_path, "penguins-regularisation")
    with _use_tracking_uri(uri_of(tmp_path)):
        model = mlflow.pyfunc.load_model(parent.data.tags[MODEL_URI])

    raw = pd.read_csv(tmp_path / "penguins.tsv", sep="\t")
    answers = model.predict(raw.drop(columns="species"))
    assert set(answers) <= {"Adelie", "Chinstrap"} and len(answers) == len(raw)
    # on the test rows, the model's answers are the delivered model's measured figures
    d = load("csv", path=str(tmp_path / "penguins.tsv"), target="species", task="classification")
    test = raw.iloc[d.table.test]
    measured = parent.data.metrics
    accuracy = float(np.mean(model.predict(test.drop(columns="species")) == test.species))
    assert accuracy == pytest.approx(measured["delivered.test_accuracy"], abs=1e-12)
    probs = model.predict(test.drop(columns="species"), params={"predict_method": "predict_proba"})
    picked = probs.to_numpy()[np.arange(len(test)), (test.species == "Chinstrap").to_numpy(int)]
    assert -np.log(picked).mean() == pytest.approx(measured["delivered.test_loss"], rel=1e-9)

    new = raw.drop(columns="species").head(3).copy()
    new.loc[0, "island"] = "Atlantis"  # never seen
    new.loc[1, ["bill_mm", "sex"]] = [np.nan, None]  # gaps, also where training had none
    new.loc[2, "mass_g"] = np.nan  # an integer column now read as floats
    assert set(model.predict(new)) <= {"Adelie", "Chinstrap"}
    # the table's lineage: the file, its digest and schema, and what became of each column
    inputs = client(tmp_path).get_run(parent.info.run_id).inputs.dataset_inputs
    contexts = {i.tags[0].value: i.dataset for i in inputs}
    assert set(contexts) == {"table", "train", "validation", "test"}
    assert contexts["table"].source_type == "local" and "penguins.tsv" in contexts["table"].source
    assert "island" in contexts["table"].schema
    columns = client(tmp_path).download_artifacts(parent.info.run_id, "data/columns.txt", tmp_path)
    with open(columns) as f:
        assert "seen: date, dropped: dates" in f.read()
    info = analysis.study_info("penguins-regularisation", uri_of(tmp_path))
    said = analysis.columns(info, uri_of(tmp_path)).set_index("column")  # the report's table
    assert said.loc["island", "input"] == "category" and said.loc["seen", "why dropped"] == "dates"
    assert said.loc["bill_mm", "missing"] > 0
