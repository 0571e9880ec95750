"""A small sweep run in this process (one worker, which joblib runs in-process), into a
temporary Optuna journal and MLflow store: the runner, worker, tracking, console, test
evaluation, plots, analysis and report, caught in seconds rather than by the end-to-end tests."""

import io

import pytest
from e2e import SMOKE
from optuna.trial import TrialState
from rich.console import Console

from pipeline import analysis
from pipeline.config import load_sweep, parse_override
from pipeline.names import COMPLETE, RUN_STATUS, STATE
from pipeline.report import write_reports
from pipeline.study import load_study
from pipeline.sweep import run_sweep
from pipeline.tracking import load_best_model

N_TRIALS = 6


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inprocess")
    overrides = [f"study.n_trials={N_TRIALS}", "study.n_jobs=1", "fixed.max_epochs=30"]
    cfg = load_sweep(SMOKE, [parse_override(o) for o in overrides])
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    out = io.StringIO()
    summary = run_sweep(
        cfg,
        storage=str(folder / "optuna.journal"),
        tracking_uri=uri,
        console=Console(file=out, width=150),
    )
    return cfg, folder, uri, summary, out.getvalue()


def test_the_budget_is_run_and_summarised(swept):
    cfg, folder, _, summary, output = swept
    study = load_study(cfg, str(folder / "optuna.journal"))
    assert len(study.trials) == N_TRIALS and all(t.state.is_finished() for t in study.trials)
    assert sum(summary.states[k] for k in ("complete", "pruned", "failed")) == N_TRIALS
    assert summary.best.number == study.best_trial.number and not summary.interrupted
    assert "best trials by val_loss" in output and "test split (evaluated once" in output


def test_the_chapter_baseline_reproduces_the_chapters_test_loss(swept):
    summary = swept[3]
    assert summary.test_metrics["chapter"]["test_loss"] == pytest.approx(0.05770, abs=5e-6)


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


def test_the_best_model_loads_back_from_the_parent_run(swept):
    cfg, _, uri, summary, _ = swept
    model = load_best_model(cfg.study.name, uri)
    best = summary.test_metrics["best"]["model"]
    for W, V in zip(model.weights_, best.weights_, strict=True):
        assert (W == V).all()


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

    from pipeline.tracking import figures_of, trial_runs

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
