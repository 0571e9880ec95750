"""End to end: the real CLI, real worker processes, the real Optuna journal and MLflow store.

Slow (each sweep starts Python processes and an MLflow store): marked ``slow``; CI runs them.
"""

import json
import signal
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from e2e import (
    SMOKE,
    alive,
    client,
    kill,
    long_sweep,
    read_link,
    running_trials,
    runs,
    start_sweep,
    study,
    sweep,
    ui_server,
    uri_of,
    wait_for,
    worker_pids,
)
from optuna.trial import TrialState

from pipeline.analysis import load_best_model
from pipeline.config import load_sweep, trial_values
from pipeline.core import load
from pipeline.names import OVERRIDES
from pipeline.tracking import read_history

pytestmark = pytest.mark.slow

STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}


def test_smoke_sweep_runs_the_budget_with_two_workers(smoke):
    folder, result = smoke
    s = study(folder)
    assert len(s.trials) == 8
    assert all(t.state.is_finished() for t in s.trials)
    baselines = {t.user_attrs.get("baseline") for t in s.trials} - {None}
    assert baselines == {"unregularised", "chapter", "chapter-dropout-0.7"}
    assert "test split (each network evaluated once" in result.stdout
    assert "2 worker(s)" in result.stdout
    link = "\n  http://127.0.0.1:5000/#/experiments/1/runs?viewStateShareKey=study&"
    assert link in result.stdout  # the study's view, one click, on one line
    said = " ".join(result.stdout.split())  # the answer, wrapped to the console's width
    assert "no spread measured: set [study] repeats" in said  # not eaten as markup


def test_every_trial_is_a_child_run_with_params_curves_and_artifacts(smoke):
    folder, _ = smoke
    parent, children = runs(folder)
    s = study(folder)
    cfg = load_sweep(SMOKE)
    assert len(children) == len(s.trials) == 8
    complete = sorted(
        (t for t in s.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value
    )
    top = {t.number for t in complete[:5]}
    c = client(folder)
    by_trial = {int(r.data.tags["trial"]): r for r in children}
    for t in s.trials:
        run = by_trial[t.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == f"trial-{t.number:04d}"
        assert run.info.status == STATUS[t.state]
        for key, value in t.params.items():  # the trial's params, under the file's names
            assert float(run.data.params[key]) == pytest.approx(value, rel=1e-3)  # 4 digits
        values = trial_values(cfg, t.params, t.user_attrs.get(OVERRIDES))
        assert run.data.params["max_epochs"] == str(values["max_epochs"])  # fixed, or baseline's
        logged = sorted(c.get_metric_history(run.info.run_id, "val_loss"), key=lambda m: m.step)
        stopped = int(run.data.metrics["stopped_epoch"])
        files = {a.path for a in c.list_artifacts(run.info.run_id)}
        assert "history.csv" in files
        full = read_history(Path(c.download_artifacts(run.info.run_id, "history.csv", str(folder))))
        # every epoch to the end, from the first within 2x of the lowest val_loss (the start)
        first = logged[0].step
        assert [m.step for m in logged] == list(range(first, stopped + 1))
        assert logged[0].value <= 2 * min(full["val_loss"])
        assert first == 1 or full["val_loss"][first - 2] > 2 * min(full["val_loss"])
        if t.state == TrialState.COMPLETE:
            assert "model.npz" in files
            assert run.data.metrics["final_val_loss"] == pytest.approx(t.value)
        if t.state == TrialState.COMPLETE and (t.number in top or "baseline" in t.user_attrs):
            assert {"curves.png", "weights.png", "activations.png"} <= files  # drawn at the end
        if t.state == TrialState.PRUNED:
            assert (
                run.data.tags["pruned"] == "true"
                and "pruned at epoch" in run.data.tags["prune_reason"]
            )


def test_parent_run_holds_config_summary_plots_table_and_best_model(smoke):
    folder, _ = smoke
    parent, _ = runs(folder)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "smoke"
    c = client(folder)
    resolved = json.loads(
        Path(
            c.download_artifacts(parent.info.run_id, "sweep_resolved.json", str(folder))
        ).read_text()
    )
    assert resolved["study"]["n_trials"] == 8 and resolved["data"]["name"] == "sine"
    for tag in (
        "storage",
        "sampler",
        "pruner",
        "numpy_version",
        "optuna_version",
        "mlflow_version",
    ):
        assert parent.data.tags[tag]
    s = study(folder)
    assert parent.data.metrics["best.final_val_loss"] == pytest.approx(s.best_value)
    counts = {state: sum(t.state == state for t in s.trials) for state in STATUS}
    assert parent.data.metrics["n_complete"] == counts[TrialState.COMPLETE]
    assert parent.data.metrics["n_pruned"] == counts[TrialState.PRUNED]
    files = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"smoke.toml", "trials.csv", "trials.parquet", "plots"} <= files
    # the delivered model: an MLflow model whose source run is the parent
    model_id = parent.data.tags["model_uri"].removeprefix("models:/")
    assert c.get_logged_model(model_id).source_run_id == parent.info.run_id
    plots = {a.path for a in c.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in plots
    assert "plots/contour_keep_prob_weight_decay.png" in plots
    # the delivered model loads back and gives the test loss the parent run reports for it
    model = load_best_model("smoke", uri_of(folder))
    d = load("sine", seed=1)
    test_mse = float(np.mean((model.predict(d.X_test) - d.y_test[:, 0]) ** 2))
    assert test_mse == pytest.approx(parent.data.metrics["delivered.test_loss"], rel=1e-9)


def test_test_split_is_reported_apart_for_best_and_baselines(smoke):
    folder, _ = smoke
    parent, children = runs(folder)
    assert "best.test_loss" in parent.data.metrics
    assert "chapter.test_loss" in parent.data.metrics
    # the chapter's configuration, run by the sweep, reproduces the chapter's figure
    assert parent.data.metrics["chapter.test_loss"] == pytest.approx(0.05770, abs=5e-6)
    with_test = [r for r in children if "test_loss" in r.data.metrics]
    assert 1 <= len(with_test) <= 4  # only the best and the baselines, never the others


def test_rerun_resumes_and_more_trials_extend_the_study(tmp_path):
    folder = tmp_path  # a study of its own: the shared smoke study stays as it is
    first = sweep(folder)
    assert first.returncode == 0, first.stdout + first.stderr
    again = sweep(folder)
    assert again.returncode == 0, again.stderr
    assert "8 of 8 trials done before" in again.stdout
    assert len(study(folder).trials) == 8
    parent, children = runs(folder)  # asserts a single parent run
    assert len(children) == 8
    more = sweep(folder, "--n-trials", "10")
    assert more.returncode == 0, more.stderr
    assert len(study(folder).trials) == 10 and len(runs(folder)[1]) == 10


def test_fixed_seed_and_one_worker_repeat_exactly(tmp_path):
    values = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        result = sweep(folder, "--n-jobs", "1", "--seed", "3", "--no-tracking")
        assert result.returncode == 0, result.stderr
        values.append([(t.params, t.value, t.state) for t in study(folder).trials])
    assert values[0] == values[1]


def test_diverging_trials_fail_with_their_reason_and_the_sweep_goes_on(tmp_path):
    result = sweep(tmp_path, "--set", "fixed.lr=1000.0", "--n-trials", "5")
    assert result.returncode == 0, result.stderr
    trials = study(tmp_path).trials
    assert len(trials) == 5
    diverged = [t for t in trials if t.state == TrialState.FAIL]
    assert diverged and all("diverged" in t.user_attrs["fail_reason"] for t in diverged)
    _, children = runs(tmp_path)
    failed = [r for r in children if r.info.status == "FAILED"]
    assert len(failed) == len(diverged)
    assert all("diverged" in r.data.tags["fail_reason"] for r in failed)


def _no_running_runs(folder):
    _, children = runs(folder, "long")
    return [r.info.run_name for r in children if r.info.status == "RUNNING"]


def test_a_killed_worker_loses_nothing_and_its_trial_is_retried(tmp_path):
    proc = start_sweep(tmp_path, sweep_file=long_sweep(tmp_path, max_epochs=40_000))
    try:
        wait_for(lambda: running_trials(tmp_path, "long") >= 2, what="two running trials")
        victim = worker_pids(proc.pid)[0]
        kill(victim)
        output, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert "a worker died" in output
    trials = study(tmp_path, "long").trials
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert interrupted
    retries = {t.user_attrs.get("retry_of"): t for t in trials if "retry_of" in t.user_attrs}
    for t in interrupted:  # parameters run again, and the retry finished
        # a sibling cut short between its reservation and its sampler's suggestion (the dead
        # worker takes the whole pool with it) had no parameters yet: its retry draws its own
        if t.params:
            assert retries[t.number].params == t.params
        assert retries[t.number].state.is_finished()
    counted = [t for t in trials if not t.user_attrs.get("interrupted")]
    assert len(counted) == 4 and all(t.state.is_finished() for t in counted)
    assert _no_running_runs(tmp_path) == []


def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(tmp_path):
    long = long_sweep(tmp_path)  # trials that never end by themselves, on any machine
    proc = start_sweep(tmp_path, sweep_file=long)
    try:
        wait_for(lambda: running_trials(tmp_path, "long") >= 1, what="a running trial")
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, output
    assert "interrupted: re-run the same command" in output
    s = study(tmp_path, "long")
    assert not [t for t in s.trials if t.state == TrialState.RUNNING]
    assert _no_running_runs(tmp_path) == []
    parent, _ = runs(tmp_path, "long")
    assert parent.info.status == "KILLED"
    # the re-run finishes the study: short trials this time, same study and budget
    again = sweep(tmp_path, "--set", "fixed.max_epochs=30", sweep_file=long)
    assert again.returncode == 0, again.stdout + again.stderr
    counted = [t for t in study(tmp_path, "long").trials if not t.user_attrs.get("interrupted")]
    assert len(counted) == 4 and all(t.state.is_finished() for t in counted)
    assert runs(tmp_path, "long")[0].info.status == "FINISHED"


def test_kill_9_of_the_sweep_leaves_readable_stores_and_a_rerun_recovers(tmp_path):
    long = long_sweep(tmp_path)
    proc = start_sweep(tmp_path, sweep_file=long)
    try:
        wait_for(lambda: running_trials(tmp_path, "long") >= 1, what="a running trial")
        workers = worker_pids(proc.pid)
        proc.kill()  # the parent, with -9
        proc.wait(timeout=30)
        for pid in workers:  # orphaned workers notice and stop at their next epoch
            wait_for(lambda pid=pid: not alive(pid), timeout=60, what=f"worker {pid} to end")
    finally:
        proc.kill()
    assert len(study(tmp_path, "long").trials) >= 2  # the journal is readable
    again = sweep(tmp_path, "--set", "fixed.max_epochs=30", sweep_file=long)
    assert again.returncode == 0, again.stdout + again.stderr
    trials = study(tmp_path, "long").trials
    counted = [t for t in trials if not t.user_attrs.get("interrupted")]
    assert len(counted) == 4 and all(t.state.is_finished() for t in counted)
    assert any(t.user_attrs.get("interrupted") for t in trials)
    assert _no_running_runs(tmp_path) == []


def test_resolved_config_is_logged_as_json(smoke):
    folder, _ = smoke
    parent, _ = runs(folder)
    path = client(folder).download_artifacts(parent.info.run_id, "sweep_resolved.json", str(folder))
    resolved = json.loads(Path(path).read_text())
    assert resolved["study"]["name"] == "smoke" and resolved["study"]["direction"] == "minimize"


def test_ui_server_answers_its_rest_api_with_the_runs_and_serves_an_artifact(smoke):
    folder, _ = smoke
    parent, children = runs(folder)
    with ui_server(folder) as (base, output):
        experiment = _get_json(
            f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=smoke"
        )
        found = _post_json(
            f"{base}/api/2.0/mlflow/runs/search",
            {"experiment_ids": [experiment["experiment"]["experiment_id"]], "max_results": 100},
        )
        assert {r["info"]["run_id"] for r in found["runs"]} >= {r.info.run_id for r in children}
        best = parent.data.tags["best_run_id"]  # the best trial's figures are always drawn
        with urllib.request.urlopen(
            f"{base}/get-artifact?path=curves.png&run_uuid={best}", timeout=30
        ) as response:
            assert response.read(8) == b"\x89PNG\r\n\x1a\n"
        link = f"{base}/#/experiments/{experiment['experiment']['experiment_id']}/runs?"
        assert read_link(output, "smoke").startswith(link)  # the study's view, one click away


def _get_json(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except OSError:  # not listening yet
        return None


def _post_json(url: str, body: dict):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_two_sweeps_started_together_on_a_fresh_store(tmp_path):
    """Two studies at once both run (the fresh MLflow store is created once, not raced); a
    second sweep of a study that is running is refused with who runs it, and never touches
    the first one's trials."""
    other = tmp_path / "other.toml"
    other.write_text(SMOKE.read_text().replace('name = "smoke"', 'name = "other"', 1))
    first, second = start_sweep(tmp_path), start_sweep(tmp_path, sweep_file=other)
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert len(study(tmp_path).trials) == len(study(tmp_path, "other").trials) == 8

    long = long_sweep(tmp_path)
    running = start_sweep(tmp_path, sweep_file=long)
    try:
        wait_for(lambda: running_trials(tmp_path, "long") >= 1, what="a running trial")
        again = sweep(tmp_path, sweep_file=long)
        assert again.returncode == 2, again.stdout + again.stderr
        assert f"study 'long' is being run by process {running.pid} on host" in again.stderr
        assert running.poll() is None  # untouched
        assert not [t for t in study(tmp_path, "long").trials if t.user_attrs.get("interrupted")]
        running.send_signal(signal.SIGINT)
        running.communicate(timeout=120)
    finally:
        running.kill()
