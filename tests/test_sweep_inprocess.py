"""A small sweep run in this process (one worker, which joblib runs in-process), into a
temporary Optuna journal and MLflow store: the runner, worker, tracking, console, test
evaluation, plots, analysis and report, caught in seconds rather than by the end-to-end tests."""

import io

import numpy as np
import pytest
from e2e import SMOKE, sweep_in_process
from mlflow import MlflowClient
from optuna.trial import TrialState
from rich.console import Console

from pipeline import analysis
from pipeline.analysis import load_best_model, write_reports
from pipeline.names import COMPLETE, MC_METRIC, RUN_STATUS, STATE
from pipeline.search import load_study, run_sweep

N_TRIALS = 6


def _sweep(folder, *overrides: str):
    """The smoke sweep with ``overrides``, one worker, into stores in ``folder``: its config,
    the store's URI, the summary and what it printed."""
    return sweep_in_process(folder, SMOKE, "study.n_jobs=1", *overrides)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inprocess")
    overrides = [f"study.n_trials={N_TRIALS}", "fixed.max_epochs=30", "study.repeats=2"]
    cfg, uri, summary, output = _sweep(folder, *overrides)
    return cfg, folder, uri, summary, output


def test_the_budget_is_run_and_summarised(swept):
    cfg, folder, _, summary, output = swept
    study = load_study(cfg, str(folder / "optuna.journal"))
    assert len(study.trials) == N_TRIALS and all(t.state.is_finished() for t in study.trials)
    assert sum(summary.states[k] for k in ("complete", "pruned", "failed")) == N_TRIALS
    (chosen,) = [row["trial"] for row in summary.selection if row["chosen"]]
    assert summary.best.number == chosen and not summary.interrupted
    assert "best trials by final_val_loss" in output and "test split (each network" in output


@pytest.fixture(scope="module")
def swept_once(tmp_path_factory):
    """The same sweep without re-runs: the best trial and the baselines tested once."""
    cfg, _, summary, _ = _sweep(
        tmp_path_factory.mktemp("once"), "study.n_trials=4", "fixed.max_epochs=30"
    )
    return cfg, summary


def test_the_chapter_baseline_reproduces_the_chapters_test_loss(swept_once):
    cfg, summary = swept_once
    assert summary.test_metrics["chapter"]["test_loss"] == pytest.approx(0.05770, abs=5e-6)
    assert summary.best.value == summary.test_metrics["best"]["final_val_loss"]
    assert not summary.selection and not summary.reruns


def test_every_trial_is_a_child_run_in_the_state_optuna_holds(swept):
    cfg, folder, uri, _, _ = swept
    study = load_study(cfg, str(folder / "optuna.journal"))
    frame = analysis.runs(cfg.study.name, uri).set_index("trial")
    assert sorted(frame.index) == [t.number for t in study.trials]
    names = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "failed",
    }
    for t in study.trials:
        assert frame.loc[t.number, STATE] == names[t.state]
        assert frame.loc[t.number, "status"] == RUN_STATUS[names[t.state]]
        if t.state == TrialState.COMPLETE:
            assert frame.loc[t.number, "final_val_loss"] == pytest.approx(t.value)


def test_the_delivered_model_is_the_chosen_configuration_refitted_and_the_one_loaded(swept):
    """Trained again on training + validation for the epochs its re-runs ran, tested once;
    the network load_best_model and mlflow.pyfunc return, whose test loss is the reported."""
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from pipeline.config import trial_values
    from pipeline.core import load, pooled
    from pipeline.names import OVERRIDES
    from pipeline.search import build_model

    cfg, _, uri, summary, _ = swept
    delivered = summary.delivered
    assert delivered["how"] == "refit" and delivered["trial"] == summary.best.number
    reruns = [r for r in summary.reruns if r.trial == summary.best.number]
    assert delivered["epochs"] == round(np.mean([r.metrics["epochs"] for r in reruns]))
    # the same recipe by hand: the chosen values, no early stopping, every non-test point
    d = load("sine", seed=1)
    t = summary.best
    values = trial_values(cfg, t.params, t.user_attrs.get(OVERRIDES))
    values |= {"patience": None, "max_epochs": delivered["epochs"]}
    by_hand = build_model(values, "regression").fit(*pooled(d))
    model = load_best_model(cfg.study.name, uri)
    for W, V in zip(model.weights_, by_hand.weights_, strict=True):
        assert np.array_equal(W, V)
    # its test loss, reported first, is the one the logged model gives on the test split
    with _use_tracking_uri(uri):
        served = mlflow.pyfunc.load_model(analysis.best_model_uri(cfg.study.name, uri))
    predicted = np.ravel(served.predict(pd.DataFrame({"x": d.X_test[:, 0]})))
    assert float(np.mean((predicted - d.y_test[:, 0]) ** 2)) == pytest.approx(
        delivered["test_loss"], rel=1e-12
    )
    info = analysis.study_info(cfg.study.name, uri)
    assert info["metrics"]["delivered.test_loss"] == pytest.approx(delivered["test_loss"])
    assert any(
        line.startswith("Delivered: refitted on training + validation") for line in summary.answer
    )


def test_deliver_trial_hands_over_the_chosen_trials_own_network(swept_once, tmp_path):
    cfg, summary = swept_once
    _, _, trial_summary, _ = _sweep(
        tmp_path, "study.n_trials=4", "fixed.max_epochs=30", "study.deliver=trial"
    )
    own = trial_summary.test_metrics["best"]["model"]
    assert trial_summary.delivered["model"] is own and trial_summary.delivered["how"] == "trial"
    assert trial_summary.delivered["test_loss"] == trial_summary.test_metrics["best"]["test_loss"]
    # refitted, the same trial's configuration gives another network and another test loss
    assert summary.delivered["trial"] == trial_summary.delivered["trial"]
    assert summary.delivered["test_loss"] != trial_summary.delivered["test_loss"]


def test_deliver_ensemble_averages_a_refit_per_rerun_seed_and_is_the_one_loaded(tmp_path):
    """The chosen configuration refitted once from each re-run seed, as by hand; the ensemble
    load_best_model returns, whose test loss through mlflow.pyfunc is the one reported."""
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from pipeline.config import trial_values
    from pipeline.core import Ensemble, load, pooled
    from pipeline.names import OVERRIDES
    from pipeline.search import build_model, repeat_seeds

    overrides = ["study.n_trials=4", "fixed.max_epochs=30", "study.repeats=3"]
    # two workers: the members are refitted in worker processes, as the re-runs are
    cfg, uri, summary, _ = _sweep(tmp_path, *overrides, "study.deliver=ensemble", "study.n_jobs=2")
    assert cfg.study.n_jobs == 2
    delivered = summary.delivered
    assert delivered["how"] == "ensemble" and delivered["trial"] == summary.best.number
    d = load("sine", seed=1)
    t = summary.best
    values = trial_values(cfg, t.params, t.user_attrs.get(OVERRIDES))
    values |= {"patience": None, "max_epochs": delivered["epochs"]}
    seeds = repeat_seeds(cfg)
    by_hand = [build_model(values | {"seed": s}, "regression").fit(*pooled(d)) for s in seeds]
    model = load_best_model(cfg.study.name, uri)
    assert isinstance(model, Ensemble) and len(model.members) == len(seeds) == 3
    for member, network in zip(model.members, by_hand, strict=True):
        for W, V in zip(member.weights_, network.weights_, strict=True):
            assert np.array_equal(W, V)
    averaged = np.mean([n.predict(d.X_test) for n in by_hand], axis=0)
    mse = float(np.mean((averaged - d.y_test[:, 0]) ** 2))
    assert delivered["test_loss"] == pytest.approx(mse, rel=1e-12)
    with _use_tracking_uri(uri):
        served = mlflow.pyfunc.load_model(analysis.best_model_uri(cfg.study.name, uri))
    predicted = np.ravel(served.predict(pd.DataFrame({"x": d.X_test[:, 0]})))
    assert float(np.mean((predicted - d.y_test[:, 0]) ** 2)) == pytest.approx(mse, rel=1e-12)
    assert any("once per re-run seed, averaged" in line for line in summary.answer)
    # the peer is trained on what the ensemble was: training + validation
    from pipeline.search import TUNED_ALPHA
    from pipeline.search._peer import peer_results

    hidden = summary.test_metrics["best"]["model"].hidden
    pooled_peer = peer_results(d, hidden, "val_loss", cfg.study.seed, folds=cfg.study.folds)
    assert summary.peers[TUNED_ALPHA]["test_loss"] == pooled_peer[TUNED_ALPHA]["test_loss"]


def test_a_report_is_written_from_the_store(swept, tmp_path):
    cfg, _, uri, _, _ = swept
    (page,) = write_reports([cfg.study.name], uri, tmp_path)
    text = page.read_text()
    assert (
        "The answer at a glance" in text
        and "<img src='data:image/png;base64," in text
        and "alt='effects'" in text
    )
    assert (page.parent / "effects.png").stat().st_size > 0
    complete = analysis.runs(cfg.study.name, uri).query(f"state == '{COMPLETE}'")
    assert len(complete) >= 1


def test_figures_are_drawn_for_the_best_and_the_baselines_and_on_demand(swept):
    from mlflow import MlflowClient

    from pipeline.search import figures_of
    from pipeline.tracking import trial_runs

    cfg, _, uri, summary, _ = swept
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.study.name).experiment_id
    runs = trial_runs(client, experiment)
    frame = analysis.runs(cfg.study.name, uri)
    complete = frame[frame["state"] == COMPLETE].sort_values("final_val_loss")
    drawn = set(complete["trial"][:5]) | {m["trial"] for m in summary.test_metrics.values()}
    figures = {"curves.png", "weights.png", "activations.png"}
    for trial, run_id in runs.items():
        files = {a.path for a in client.list_artifacts(run_id)}
        assert (figures <= files) == (trial in drawn), trial
    # any complete trial's figures, with one command (one not drawn yet where there is one)
    target = [int(t) for t in complete["trial"] if t not in drawn][:1] or [
        int(complete["trial"].iloc[0])
    ]
    assert figures_of(cfg.study.name, target, uri) == target
    assert figures <= {a.path for a in client.list_artifacts(runs[target[0]])}
    pruned = [int(t) for t in frame.loc[frame["state"] != COMPLETE, "trial"]]
    assert figures_of(cfg.study.name, pruned[:1], uri) == []  # no model, no figures


def test_the_parent_run_says_the_answer_and_marks_the_best_trial(swept):
    from mlflow import MlflowClient

    from pipeline.names import BEST, BEST_RUN_ID, NOTE

    cfg, _, uri, summary, _ = swept
    info = analysis.study_info(cfg.study.name, uri)
    note = info["tags"][NOTE]
    best_run = info["tags"][BEST_RUN_ID]
    assert f"[trial {summary.best.number}](#/experiments/" in note and best_run in note
    assert "Test loss, evaluated once after selection: best " in note
    runs = analysis.runs(cfg.study.name, uri)
    client = MlflowClient(uri)
    marked = [r for r in runs["run_id"] if client.get_run(r).data.tags.get(BEST) == "true"]
    assert marked == [best_run]


def test_every_trial_logs_the_same_full_params_and_the_searched_ones_as_metrics(swept):
    from mlflow import MlflowClient

    from pipeline.config import MLP_DEFAULTS, full_values, trial_values
    from pipeline.names import OVERRIDES

    cfg, folder, uri, _, _ = swept
    client = MlflowClient(uri)
    study = load_study(cfg, str(folder / "optuna.journal"))
    runs = analysis.runs(cfg.study.name, uri).set_index("trial")
    keys = set(MLP_DEFAULTS) - {"task"}
    for t in study.trials:
        run = client.get_run(runs.loc[t.number, "run_id"])
        assert set(run.data.params) == keys, t.number  # baselines add no column
        values = trial_values(cfg, t.params, t.user_attrs.get(OVERRIDES))
        for key, value in full_values(cfg, values).items():
            if isinstance(value, float):  # whole: copied from the UI, it rebuilds the trial
                assert float(run.data.params[key]) == value
            searched = key in cfg.search
            assert (key in run.data.metrics) == searched  # a number to sort and filter by
            if searched:
                assert run.data.metrics[key] == value
                assert runs.loc[t.number, key] == run.data.metrics[key]


def test_the_parent_run_holds_the_sweep_as_an_artifact_and_the_study_a_saved_view(swept):
    import json

    from mlflow import MlflowClient

    from pipeline.names import STUDY_SEARCHED
    from pipeline.tracking import VIEW_TAG

    cfg, _, uri, summary, _ = swept
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.study.name)
    parent = client.get_run(summary.parent_run_id)
    assert parent.data.params == {}  # no 44 params crowding the UI's column picker
    assert parent.data.tags[STUDY_SEARCHED] == ",".join(cfg.search)
    assert "sweep_resolved.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    # with re-runs, the chosen configuration's mean over the seeds, as in the choice
    (chosen,) = [row for row in summary.selection if row["chosen"]]
    assert parent.data.metrics["best.final_val_loss"] == pytest.approx(chosen["mean"])
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(experiment.tags[VIEW_TAG])
    assert view["orderByKey"] == "metrics.`final_val_loss`" and view["orderByAsc"] is True
    # every column of the view is a metric, param or tag the best trial's run really has
    best = client.get_run(parent.data.tags["best_run_id"]).data
    held = {"metrics": best.metrics, "params": best.params, "tags": best.tags}
    for column in view["selectedColumns"]:
        kind, name = column.split(".", 1)
        assert name.strip("`") in held[kind] or name == "`baseline`", column
    assert {f"metrics.`{k}`" for k in cfg.search} <= set(view["selectedColumns"])
    # the same view, filtered and sorted by MLflow's own search, lists complete trials best first
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=view["searchFilter"],
        order_by=["metrics.`final_val_loss` ASC"],
    )
    assert found[0].info.run_id == parent.data.tags["best_run_id"]
    assert len(found) == N_TRIALS


def test_the_trials_with_figures_log_the_ensemble_view_by_number_of_passes(swept):
    from mlflow import MlflowClient

    from pipeline.core import MLP, load

    cfg, _, uri, _, _ = swept
    client = MlflowClient(uri)
    frame = analysis.runs(cfg.study.name, uri)
    complete = frame[frame["state"] == COMPLETE]
    d = load(cfg.data.name, seed=cfg.data.seed, **cfg.data.options)
    measured = 0
    for _, row in complete.iterrows():
        curve = client.get_metric_history(row["run_id"], MC_METRIC)
        drawn = "curves.png" in {a.path for a in client.list_artifacts(row["run_id"])}
        if row["keep_prob"] < 1 and drawn:
            assert sorted(m.step for m in curve) == [1, 3, 10]
            # the saved network's own Monte-Carlo average, on the validation split
            model = MLP.load(client.download_artifacts(row["run_id"], "model.npz"))
            by_t = model.mc_losses(d.X_val, d.y_val, (1, 3, 10))
            assert {m.step: m.value for m in curve} == pytest.approx(by_t, rel=1e-12)
            measured += 1
        else:  # nothing dropped (nothing to average), or no figures drawn (not measured)
            assert curve == []
    assert measured >= 1  # the chapter-dropout baseline at least
    view = analysis.ensemble_view(frame, cfg.study.name, uri)
    assert len(view) == 3 * measured and (view["ratio"] > 0).all()


def test_repeats_train_the_best_and_the_baselines_on_the_same_other_seeds(swept):
    from mlflow import MlflowClient

    from pipeline.config import trial_values
    from pipeline.core import load
    from pipeline.names import OVERRIDES
    from pipeline.search import build_model
    from pipeline.search._evaluation import repeat_seeds

    cfg, folder, uri, summary, output = swept
    assert repeat_seeds(cfg) == [1, 2]  # the study's seed is 0: not among them
    d = load(cfg.data.name, seed=cfg.data.seed, **cfg.data.options)
    study = load_study(cfg, str(folder / "optuna.journal"))
    unregularised = summary.test_metrics["unregularised"]
    t = study.trials[unregularised["trial"]]
    values = trial_values(cfg, t.params, t.user_attrs.get(OVERRIDES)) | {"seed": 2}
    again = build_model(values, d.task).fit(d.X_train, d.y_train, d.X_val, d.y_val)
    assert unregularised["test_losses"][1] == again.evaluate(d.X_test, d.y_test)["loss"]
    assert unregularised["test_loss_mean"] == pytest.approx(np.mean(unregularised["test_losses"]))
    client = MlflowClient(uri)
    parent = client.get_run(summary.parent_run_id)
    for name, m in summary.test_metrics.items():
        assert parent.data.metrics[f"{name}.test_loss_mean"] == pytest.approx(m["test_loss_mean"])
        history = client.get_metric_history(parent.info.run_id, f"{name}.test_loss_repeats")
        assert [h.value for h in sorted(history, key=lambda h: h.step)] == m["test_losses"]
    assert "final_val_loss over 2 other seeds" in output


def test_the_report_judges_over_seeds_and_shows_the_ensemble_view(swept, tmp_path):
    from pipeline.analysis import chapter_table

    cfg, _, uri, summary, _ = swept
    (page,) = write_reports([cfg.study.name], uri, tmp_path)
    text = page.read_text()
    assert "Over 2 other seeds: test loss against the unregularised network" in text
    assert "alt='ensemble'" in text and (page.parent / "ensemble_by_T.csv").exists()
    (row,) = chapter_table([cfg.study.name], uri).to_dict("records")
    # the technique's own best: the search's best trial where a baseline won on validation
    best = summary.test_metrics.get("tuned", summary.test_metrics["best"])
    assert row["a baseline was best on validation"] == ("tuned" in summary.test_metrics)
    assert row["test_loss (mean ± std)"] == (
        f"{best['test_loss_mean']:.4g} ± {best['test_loss_std']:.2g}"
    )
    assert row["verdict"] in {"helps", "hurts", "no effect within noise"}
    assert row["technique"] == cfg.study.description.split(":")[0]


def test_a_peer_row_is_measured_logged_and_reported_apart_from_the_baselines(swept, tmp_path):
    from pipeline.search import DEFAULT, LABELS

    cfg, _, uri, summary, output = swept
    assert set(summary.peers) == set(LABELS)  # the chosen network is not 100 units wide
    assert all(label in output for label in LABELS.values())  # the end-of-sweep table
    info = analysis.study_info(cfg.study.name, uri)
    for name, m in summary.peers.items():
        assert info["metrics"][f"{name}.test_loss"] == pytest.approx(m["test_loss"])
    peers = analysis.peers(info).set_index("configuration")
    assert peers.loc[DEFAULT, "alpha"] == 1e-4
    (page,) = write_reports([cfg.study.name], uri, tmp_path)
    assert "A peer for reference, not a baseline" in page.read_text()
    assert "peer" not in set(analysis.runs(cfg.study.name, uri)["baseline"].dropna())


@pytest.fixture(scope="module")
def swept_cv(tmp_path_factory):
    """A classifier with cross-validation, re-runs and the one-standard-error rule."""
    folder = tmp_path_factory.mktemp("cv")
    cfg, uri, summary, output = _sweep(
        folder,
        "data.name=moons",
        "data.n_samples=120",
        "data.noise=0.3",
        "study.n_trials=5",
        "study.folds=3",
        "pruner.n_warmup_steps=0",
        "study.repeats=2",
        "study.top_k=2",
        "study.select=one_se",
        "fixed.max_epochs=30",
    )
    return cfg, uri, summary, output, folder


def test_each_fold_is_logged_and_the_objective_is_their_mean(swept_cv):
    from mlflow import MlflowClient

    cfg, uri, _, _, _ = swept_cv
    client = MlflowClient(uri)
    complete = analysis.runs(cfg.study.name, uri).query("state == 'complete'")
    assert len(complete)
    for _, row in complete.iterrows():
        folds = client.get_metric_history(row["run_id"], "fold.final_val_loss")
        assert sorted(m.step for m in folds) == [0, 1, 2]
        assert row["final_val_loss"] == pytest.approx(np.mean([m.value for m in folds]))


def test_reruns_are_runs_of_their_own_and_the_choice_follows_them(swept_cv):
    from mlflow import MlflowClient

    from pipeline.names import CHOSEN, RERUN_OF, RERUN_SEED, ROLE, ROLE_RERUN

    cfg, uri, summary, output, _ = swept_cv
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.study.name)
    reruns = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{ROLE}` = '{ROLE_RERUN}'"
    )
    ablated = sum(len(switched.runs) for switched in summary.ablation)
    assert len(reruns) == 2 * len(summary.selection) + ablated  # every candidate, both seeds
    assert {r.data.tags[RERUN_SEED] for r in reruns} == {"1", "2"}
    assert all(r.data.tags["mlflow.parentRunId"] == summary.parent_run_id for r in reruns)
    # the one-SE rule, recomputed from the runs in the store
    by_trial: dict[int, list] = {}
    for r in reruns:
        by_trial.setdefault(int(r.data.tags[RERUN_OF]), []).append(r.data.metrics)
    means = {n: np.mean([m["final_val_loss"] for m in ms]) for n, ms in by_trial.items()}
    norms = {n: np.mean([m["weight_norm"] for m in ms]) for n, ms in by_trial.items()}
    best = min(means, key=means.get)
    se = np.std([m["final_val_loss"] for m in by_trial[best]], ddof=1) / np.sqrt(2)
    near = [n for n in means if means[n] - means[best] <= se]
    assert summary.best.number == min(near, key=norms.get)
    chosen = {int(r.data.tags[RERUN_OF]) for r in reruns if r.data.tags.get(CHOSEN) == "true"}
    assert chosen == {summary.best.number}
    # test metrics: only on the re-runs of the chosen configuration and the baselines
    reported = {m["trial"] for m in summary.test_metrics.values()}
    for r in reruns:
        assert ("test_accuracy" in r.data.metrics) == (int(r.data.tags[RERUN_OF]) in reported)
    # the trials' table is unchanged: re-runs are not trials
    assert len(analysis.runs(cfg.study.name, uri)) == cfg.study.n_trials
    # both validation metrics side by side for the pick, the baselines and the peer
    assert "final_val_accuracy" in output and "final_val_loss" in output
    assert "the choice: final_val_loss over 2 other seeds (one-standard-error rule)" in output
    assert summary.answer[0].startswith("Chosen: ") and "3 folds" in summary.answer[0]


def test_the_report_leads_with_the_answer_and_shows_the_choice(swept_cv, tmp_path):
    import html

    cfg, uri, summary, _, _ = swept_cv
    (page,) = write_reports([cfg.study.name], uri, tmp_path)
    text = page.read_text()
    assert all(html.escape(line) in text for line in summary.answer)
    assert "The choice: the top configurations and the baselines over other seeds" in text
    choice = analysis.reruns(cfg.study.name, uri)
    assert len(choice) == len(summary.selection) and choice["seeds"].eq(2).all()
    (chosen,) = choice[choice["chosen"]].to_dict("records")
    assert chosen["trial"] == summary.best.number
    assert chosen["test_accuracy"] == pytest.approx(summary.test_metrics["best"]["test_accuracy"])
    versus = analysis.best_against_baselines(analysis.runs(cfg.study.name, uri))
    assert versus.iloc[0]["trial"] == summary.best.number  # the chosen one, not the search's


def test_a_sweep_run_again_after_its_budget_replaces_its_reruns(swept_cv):
    from mlflow import MlflowClient

    from pipeline.names import ROLE, ROLE_RERUN

    cfg, uri, summary, _, folder = swept_cv
    again = run_sweep(
        cfg,
        storage=str(folder / "optuna.journal"),
        tracking_uri=uri,
        console=Console(file=io.StringIO()),
    )
    assert again.best.number == summary.best.number  # the same seeds, the same choice
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.study.name)
    reruns = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{ROLE}` = '{ROLE_RERUN}'"
    )
    ablated = sum(len(switched.runs) for switched in again.ablation)
    assert len(reruns) == 2 * len(summary.selection) + ablated  # replaced, not added


def test_runs_and_trials_follow_mlflow_s_and_optuna_s_own_conventions(swept):
    """MLflow's source tags on every run and the data splits as the parent's inputs; Optuna's
    objective named and each trial pointing to its run."""
    from mlflow import MlflowClient

    from pipeline.names import MLFLOW_RUN_ID, MLFLOW_RUN_URL

    cfg, folder, uri, _, _ = swept
    client = MlflowClient(uri)
    study = load_study(cfg, str(folder / "optuna.journal"))
    assert study.metric_names == [cfg.objective]
    assert f"value_{cfg.objective}" in study.trials_dataframe().columns  # not "value"
    runs = analysis.runs(cfg.study.name, uri).set_index("trial")
    for t in study.trials:
        assert t.user_attrs[MLFLOW_RUN_ID] == runs.loc[t.number, "run_id"]
    experiment = client.get_experiment_by_name(cfg.study.name).experiment_id
    for t in study.trials:  # and to its page, where `python -m pipeline ui` serves this store
        run_id = runs.loc[t.number, "run_id"]
        assert t.user_attrs[MLFLOW_RUN_URL] == (
            f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run_id}"
        )
    every = client.search_runs([experiment], max_results=1000)
    assert every and all(
        {"mlflow.source.name", "mlflow.source.type", "mlflow.user"} <= set(r.data.tags)
        for r in every
    )
    parent = next(r for r in every if r.data.tags.get("pipeline.role") == "study")
    inputs = parent.inputs.dataset_inputs
    contexts = {i.tags[0].value: i.dataset for i in inputs}
    assert set(contexts) == {"train", "validation", "test"}
    assert contexts["train"].name == f"{cfg.data.name}-train" and contexts["train"].digest


def test_a_trial_s_params_read_back_from_mlflow_rebuild_its_network_to_the_last_digit(tmp_path):
    from pipeline.config import model_kwargs
    from pipeline.core import MLP, load, splits_of

    no_pruning = ["study.n_trials=5", "fixed.max_epochs=30", "pruner.n_startup_trials=100"]
    cfg, uri, _, _ = _sweep(tmp_path, *no_pruning)
    runs = analysis.runs(cfg.study.name, uri)
    searched = runs[(runs["state"] == "complete") & runs["baseline"].isna()]
    row = searched.iloc[0]  # typed params, as pandas reads them from the store
    assert any(len(repr(row[k])) > 8 for k in cfg.search)  # more digits than 4 significant
    names = [k for k in MLP().get_params() if k != "task"]
    values = {k: row[k] for k in names if k in row.index}
    values = {k: v.item() if hasattr(v, "item") else v for k, v in values.items()}
    d = load(cfg.data.name, seed=cfg.data.seed, **cfg.data.options)
    split = splits_of(d, cfg.study.folds, cfg.study.seed)[0]
    net = MLP(task=d.task, **model_kwargs(values))
    net.fit(split.X_train, split.y_train, split.X_val, split.y_val)
    assert net.evaluate(split.X_val, split.y_val)["loss"] == row["final_val_loss"]


def test_the_end_of_a_sweep_into_another_store_says_how_to_open_that_store(swept):
    cfg, _, uri, _, output = swept
    assert f"python -m pipeline ui --tracking-uri {uri}, then open" in output
    assert f"python -m pipeline report --tracking-uri {uri}" in output
    assert "`make ui`" not in output


def test_studies_lists_every_study_with_its_progress(swept):
    from e2e import cli_in_process

    from pipeline import analysis

    cfg, folder, uri, summary, _ = swept
    table = analysis.progress(uri).set_index("study")
    row = table.loc[cfg.study.name]
    assert row["state"] == "finished" and row["trials"] == N_TRIALS == row["budget"]
    best = analysis.leaderboard(analysis.runs(cfg.study.name, uri), n=1)[cfg.objective].iloc[0]
    assert row["best"] == best and row["objective"] == cfg.objective
    done = cli_in_process(folder, "studies", "--tracking-uri", uri)
    assert done.returncode == 0 and cfg.study.name in done.stdout and "finished" in done.stdout


def test_system_metrics_are_sampled_onto_the_parent_run_when_asked_for(swept, tmp_path):
    cfg, uri, _, _ = _sweep(
        tmp_path, "study.n_trials=3", "fixed.max_epochs=200", "tracking.system_metrics=true"
    )
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == cfg.study.name]
    (parent,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`pipeline.role` = 'study'"
    )
    system = {k for k in parent.data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
    history = client.get_metric_history(parent.info.run_id, "system/cpu_utilization_percentage")
    assert len(history) >= 1 and all(0 <= m.value <= 100 * 64 for m in history)
    # off by default: the sweep without the key has none
    _, _, default_uri, _, _ = swept
    default = MlflowClient(default_uri)
    (e,) = [e for e in default.search_experiments() if e.name == cfg.study.name]
    (p,) = default.search_runs([e.experiment_id], filter_string="tags.`pipeline.role` = 'study'")
    assert not [k for k in p.data.metrics if k.startswith("system/")]


def test_the_answer_switches_each_regulariser_of_the_pick_off_and_measures_the_change(swept):
    """The ablation: every searched regulariser the chosen configuration uses, switched off
    alone on the re-runs' seeds; its paired change checked against networks trained by hand;
    the answer's words, the parent run and the report come from it."""
    from pipeline.config import trial_values
    from pipeline.core import load
    from pipeline.names import OVERRIDES, REGULARISERS_OFF
    from pipeline.search import measure

    cfg, _, uri, summary, output = swept
    t = summary.best
    values = trial_values(cfg, t.params, t.user_attrs.get(OVERRIDES))
    used = [k for k in cfg.search if k in REGULARISERS_OFF and values[k] != REGULARISERS_OFF[k]]
    assert used and [s.key for s in summary.ablation] == used
    switched = summary.ablation[0]
    d = load("sine", seed=1)
    on = {r.seed: r for r in summary.reruns if r.trial == t.number}
    assert switched.seeds == sorted(on) and len(on) == 2
    for seed, change in zip(switched.seeds, switched.val_changes, strict=True):
        off_values = values | {switched.key: REGULARISERS_OFF[switched.key], "seed": seed}
        val, _, _ = measure(cfg, off_values | {"noise_seed": None}, d)
        expected = val[cfg.objective] / on[seed].metrics[cfg.objective] - 1
        assert change == pytest.approx(expected, rel=1e-9)
    assert switched.verdict in {"helps", "hurts", "no effect within noise"}
    # the words come from it, not from the ranges of the top configurations
    assert any("switching it off" in line for line in summary.answer)
    assert not any(" is in use:" in line for line in summary.answer)
    assert "each regulariser of the pick switched off" in output
    # and the end says where its time went
    assert set(summary.end_seconds) == {"choice and test", "ablation", "peer"}
    assert "; the end: choice and test " in output
    table = analysis.ablation(analysis.study_info(cfg.study.name, uri)).set_index("regulariser")
    assert list(table.index) == used
    assert table.loc[switched.key, "verdict"] == switched.verdict
    assert table.loc[switched.key, "seeds"] == 2
    # its runs are tagged like the re-runs, and stay out of the choice's table
    choice = analysis.reruns(cfg.study.name, uri)
    assert set(choice["trial"]) == {row["trial"] for row in summary.selection}


def test_the_delivered_model_is_registered_under_the_name_the_sweep_file_gives(tmp_path):
    from pipeline.names import MODEL_URI

    cfg, uri, summary, _ = _sweep(
        tmp_path, "study.n_trials=3", "fixed.max_epochs=20", "tracking.register_as=sine-net"
    )
    client = MlflowClient(uri)
    (version,) = client.search_model_versions("name = 'sine-net'")
    parent = client.get_run(summary.parent_run_id)
    assert version.source == parent.data.tags[MODEL_URI]  # the delivered model
    assert version.run_id == summary.parent_run_id


def test_a_bad_model_name_to_register_is_one_line_and_nothing_is_written(tmp_path):
    from e2e import cli_in_process

    done = cli_in_process(
        tmp_path, "sweep", str(SMOKE), "--set", 'tracking.register_as="my model!"'
    )
    assert done.returncode == 2
    assert "tracking.register_as = 'my model!': a model name must start with" in done.stderr
    assert list(tmp_path.iterdir()) == []
