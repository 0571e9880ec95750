"""Pieces of the MLflow logging that need no store."""

from pipeline.tracking import curve_steps


def test_short_curves_are_logged_at_every_epoch():
    epochs = list(range(1, 61))
    assert curve_steps(epochs, 100) == list(range(60))
    assert curve_steps(epochs, 0) == list(range(60))


def test_long_curves_are_thinned_keeping_first_last_and_best():
    epochs = list(range(1, 3001))
    steps = curve_steps(epochs, 100, best_epoch=1234)
    assert 100 <= len(steps) <= 101
    assert steps[0] == 0 and steps[-1] == 2999 and 1233 in steps
    assert steps == sorted(set(steps))
    gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    assert max(gaps) <= 31  # evenly spread


def test_a_diverging_curve_is_logged_up_to_where_it_diverged():
    from pipeline.tracking import readable_length

    history = {
        "epoch": [1, 2, 3, 4, 5],
        "train_loss": [1.0, 0.5, 0.4, 2e3, float("nan")],
        "val_loss": [1.2, 0.6, 0.5, 0.7, float("inf")],
    }
    assert readable_length(history) == 3  # 2e3 > 100 x 1.0: the scale of a diverging trial
    history["train_loss"][3] = 0.3
    assert readable_length(history) == 4  # then only the non-finite epoch goes
    calm = {"epoch": [1, 2], "train_loss": [1.0, 0.9], "val_loss": [1.0, 0.8]}
    assert readable_length(calm) == 2


def test_logged_curves_start_where_the_loss_comes_within_twice_its_lowest():
    from pipeline.core import curve_start

    history = {"train_loss": [9.0, 3.0, 1.0, 0.6], "val_loss": [15.0, 4.0, 0.9, 0.5, 0.4]}
    assert curve_start(history, 5) == 3  # 0.5 <= 2 x 0.4; 0.9 is not
    assert curve_start(history, 3) == 2  # only the readable part counts: 0.9 is its lowest
    assert curve_start({"train_loss": [2.0, 1.5, 1.2]}, 3) == 0  # no validation: training
    assert curve_start({"val_loss": [1.0, float("nan")]}, 2) == 0  # nothing to judge by


def test_the_trials_table_with_an_empty_fixed_params_cell_writes_to_parquet(tmp_path):
    """A baseline none of whose overrides is searched is enqueued with empty fixed params:
    Parquet cannot store that empty struct as it is."""
    import optuna
    import pandas as pd

    from pipeline.tracking._parent import _as_text

    study = optuna.create_study()
    study.enqueue_trial({}, user_attrs={"overrides": {"keep_prob": 1.0}})
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    _as_text(study.trials_dataframe()).to_parquet(tmp_path / "trials.parquet")
    back = pd.read_parquet(tmp_path / "trials.parquet")
    assert back["system_attrs_fixed_params"].iloc[0] == "{}"
    assert back["user_attrs_overrides"].iloc[0] == '{"keep_prob": 1.0}'


def test_the_hints_point_where_the_runs_are(tmp_path, monkeypatch):
    from pipeline.tracking import tracking_uri, where_to_look

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    local = where_to_look(tracking_uri(None), "3")
    assert "`make ui`" in local[0] and local[1].strip().startswith(
        "http://127.0.0.1:5000/#/experiments/3/"
    )
    assert local[2] == "answer the question: `make report`"
    other = "sqlite:////data/elsewhere/mlflow.db"
    elsewhere = where_to_look(other, "3")
    assert f"python -m pipeline ui --tracking-uri {other}" in elsewhere[0]
    assert elsewhere[2].endswith(f"python -m pipeline report --tracking-uri {other}")
    server = where_to_look("http://head.lab:5001/", "7")
    assert server[1].strip().startswith("http://head.lab:5001/#/experiments/7/runs")
    assert "make ui" not in " ".join(server) and "127.0.0.1" not in " ".join(server)
    secret = where_to_look("http://user:s3cret@head.lab:5001", "7")
    assert "s3cret" not in " ".join(secret)
