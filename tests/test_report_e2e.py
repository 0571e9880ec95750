"""Analysis and reports on real sweep stores: typed frames, baselines, every report file, and a
two-study comparison. Slow: they need sweeps to have run."""

import pandas as pd
import pytest
from e2e import study, sweep, uri_of
from optuna.trial import TrialState

from pipeline import analysis
from pipeline.analysis import write_reports

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The smoke study plus a second one on another data set, in a store of this module's own."""
    folder = tmp_path_factory.mktemp("report")
    for args in ((), ("--set", "study.name='smoke-moons'", "--set", "data.name='moons'")):
        result = sweep(folder, *args)
        assert result.returncode == 0, result.stdout + result.stderr
    return folder, uri_of(folder)


def test_runs_is_one_typed_row_per_trial_with_baselines(store):
    folder, uri = store
    frame = analysis.runs("smoke", uri)
    trials = study(folder).trials
    assert len(frame) == len(trials) and frame["trial"].is_unique
    assert frame["trial"].dtype == "Int64" and frame["patience"].dtype == "Int64"
    for column in ("keep_prob", "weight_decay", "l1", "final_val_loss", "gen_gap", "duration"):
        assert frame[column].dtype == "float64", column
    assert set(frame["baseline"].dropna()) == {"unregularised", "chapter", "chapter-dropout-0.7"}
    assert set(frame["state"].astype(str)) <= {"complete", "pruned", "failed", "interrupted"}
    by_trial = frame.set_index("trial")
    for t in trials:  # params as numbers equal to Optuna's, to the 4 digits MLflow holds
        for key, value in t.params.items():
            assert by_trial.loc[t.number, key] == pytest.approx(value, rel=1e-3)
        if t.state == TrialState.COMPLETE:
            assert by_trial.loc[t.number, "final_val_loss"] == pytest.approx(t.value)
    assert analysis.studies(uri) == ["smoke", "smoke-moons"]


def test_curves_are_long_per_epoch_frames(store):
    _, uri = store
    frame = analysis.runs("smoke", uri)
    curves = analysis.curves("smoke", uri)
    assert list(curves.columns) == ["trial", "run_id", "epoch", "metric", "value"]
    one = frame.iloc[0]
    val = curves[(curves["trial"] == one["trial"]) & (curves["metric"] == "val_loss")]
    first = int(val["epoch"].iloc[0])  # where the curve came within 2x of its lowest
    assert list(val["epoch"]) == list(range(first, int(one["stopped_epoch"]) + 1))


def test_comparisons_answer_the_question(store):
    _, uri = store
    frame = analysis.runs("smoke", uri)
    versus = analysis.best_against_baselines(frame)
    assert versus["configuration"].iloc[0] == "best"
    assert {"chapter", "unregularised"} <= set(versus["configuration"])
    chapter = versus[versus["configuration"] == "chapter"].iloc[0]
    assert chapter["test_loss"] == pytest.approx(0.05770, abs=5e-6)  # the chapter's net
    board = analysis.leaderboard(frame)
    assert board["final_val_loss"].is_monotonic_increasing
    effects = analysis.marginal_effects(
        frame, ["keep_prob", "weight_decay"], log_params=("weight_decay",)
    )
    assert set(effects["param"]) == {"keep_prob", "weight_decay"}
    assert effects["count"].sum() == 2 * (frame["state"] == "complete").sum()
    summary = analysis.pruning_summary(frame).iloc[0]
    assert summary["trials"] == len(frame)
    assert summary["complete"] + summary["pruned"] + summary["failed"] == len(frame)
    pruned = frame[frame["state"] == "pruned"]
    saved = (pruned["max_epochs"] - pruned["stopped_epoch"]).sum()  # each trial's own limit
    assert summary["epochs_saved_by_pruning"] == saved


def test_report_files_are_written_and_logged_and_two_studies_compare(store, tmp_path):
    folder, uri = store
    pages = write_reports(["smoke", "smoke-moons"], uri, tmp_path / "reports")
    assert [p.parent.name for p in pages] == ["smoke", "smoke-moons", "smoke-vs-smoke-moons"]
    report = tmp_path / "reports" / "smoke"
    expected = {
        "index.html",
        "learning_curves.png",
        "effects.png",
        "gap_vs_strength.png",
        "best_vs_baselines.csv",
        "best_vs_baselines.parquet",
        "leaderboard.csv",
        "marginal_effects.csv",
        "regulariser_effects.csv",
        "pruning.csv",
        "runs.csv",
        "runs.parquet",
        "curves.csv",
        "importances.csv",
    }
    written = {p.name for p in report.iterdir()}
    assert expected <= written
    for path in report.iterdir():
        assert path.stat().st_size > 0, path
    assert pd.read_parquet(report / "runs.parquet").shape[0] == len(study(folder).trials)
    page = (report / "index.html").read_text()
    assert (
        "The answer at a glance" in page
        and "<img src='data:image/png;base64," in page
        and "alt='effects'" in page
    )
    comparison = tmp_path / "reports" / "smoke-vs-smoke-moons" / "studies.csv"
    table = pd.read_csv(comparison)
    assert list(table["study"]) == ["smoke", "smoke-moons"]
    assert list(table["data"]) == ["sine", "moons"]
    # the report is also an artifact of the study's parent run
    from e2e import client

    info = analysis.study_info("smoke", uri)
    logged = {a.path for a in client(folder).list_artifacts(info["run_id"], "report")}
    assert "report/index.html" in logged


def test_report_cli_and_unknown_study(store, tmp_path):
    import subprocess
    import sys

    from e2e import env

    folder, uri = store
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "report", "nope", "--tracking-uri", uri],
        capture_output=True,
        text=True,
        env=env(),
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "no study (MLflow experiment) 'nope'" in result.stderr
    assert "smoke" in result.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "pipeline", "report", "smoke", "--tracking-uri", uri],
        capture_output=True,
        text=True,
        env=env(),
        cwd=tmp_path,
    )
    assert ok.returncode == 0 and (tmp_path / "reports" / "smoke" / "index.html").is_file()
