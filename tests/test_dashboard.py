"""``python -m pipeline dashboard``: optuna-dashboard over the study storage, read-only, opened
beside a running sweep, which it neither disturbs nor writes to."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import optuna
import pytest
from e2e import env, free_ports, long_sweep, start_sweep, study, wait_for

from pipeline.search import ReadOnlyStorage

WRITES = {  # every write of Optuna's storage interface, with arguments of the right shape
    "create_new_study": ([optuna.study.StudyDirection.MINIMIZE], "another"),
    "delete_study": (0,),
    "set_study_user_attr": (0, "k", 1),
    "set_study_system_attr": (0, "k", 1),
    "create_new_trial": (0,),
    "set_trial_param": (0, "x", 0.5, optuna.distributions.FloatDistribution(0, 1)),
    "set_trial_state_values": (0, optuna.trial.TrialState.COMPLETE, [1.0]),
    "set_trial_intermediate_value": (0, 1, 1.0),
    "set_trial_user_attr": (0, "k", 1),
    "set_trial_system_attr": (0, "k", 1),
}


def test_the_read_only_storage_reads_through_and_refuses_every_write():
    inner = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=inner, study_name="s").optimize(
        lambda t: t.suggest_float("x", 0, 1), 3
    )
    storage = ReadOnlyStorage(inner)
    (summary,) = storage.get_all_studies()
    assert summary.study_name == "s" and len(storage.get_all_trials(summary._study_id)) == 3
    loaded = optuna.load_study(study_name="s", storage=storage)
    assert loaded.best_value == optuna.load_study(study_name="s", storage=inner).best_value
    assert {*WRITES} == {
        name
        for name in optuna.storages.BaseStorage.__abstractmethods__
        if not name.startswith("get_")
    }
    for name, args in WRITES.items():
        with pytest.raises(PermissionError, match="read-only"):
            getattr(storage, name)(*args)
    assert len(inner.get_all_trials(0)) == 3 and len(inner.get_all_studies()) == 1


def _get(base: str, path: str) -> dict:
    with urllib.request.urlopen(f"{base}{path}", timeout=10) as answer:
        return json.loads(answer.read())


def _send(base: str, method: str, path: str, body: dict | None = None) -> int:
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body or {}).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.slow
def test_the_dashboard_follows_a_running_sweep_without_disturbing_it(tmp_path):
    n_trials = 8  # of some seconds each (no early stopping, no pruning): the dashboard,
    # started once the journal exists, sees most of them come in
    long = long_sweep(tmp_path, max_epochs=15_000, n_trials=n_trials)
    sweep = start_sweep(tmp_path, sweep_file=long)
    journal = tmp_path / "mlruns" / "optuna.journal"
    wait_for(journal.exists, timeout=120, what="the sweep's journal")
    (port,) = free_ports(1)
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "dashboard.log"  # a file: its request log never blocks it
    dashboard = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "dashboard", "--port", str(port)],
        cwd=tmp_path,
        env=env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # Ctrl-C as a terminal sends it, even when the tests run in the background (a shell
        # then starts them with SIGINT ignored, and children inherit that)
    )
    try:

        def smoke_study() -> dict | None:
            try:
                found = _get(base, "/api/studies")["study_summaries"]
            except OSError:
                return None
            return next((s for s in found if s["study_name"] == "long"), None)

        summary = wait_for(smoke_study, timeout=120, what="the dashboard to list the study")
        study_id = summary["study_id"]
        seen = []  # trials the dashboard shows, read while the sweep runs
        while sweep.poll() is None:
            seen.append(len(_get(base, f"/api/studies/{study_id}")["trials"]))
            time.sleep(0.5)
        # every write the dashboard offers is refused, and nothing reaches the journal
        before = journal.read_bytes()
        assert (
            _send(base, "PUT", f"/api/studies/{study_id}/note", {"version": 1, "body": "x"}) >= 400
        )
        assert (
            _send(base, "POST", "/api/studies", {"study_name": "new", "directions": ["minimize"]})
            >= 400
        )
        assert _send(base, "DELETE", f"/api/studies/{study_id}") >= 400
        assert journal.read_bytes() == before
        detail = _get(base, f"/api/studies/{study_id}")
    finally:
        os.killpg(dashboard.pid, signal.SIGINT)
        try:
            status = dashboard.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"Ctrl-C did not stop the dashboard:\n{log.read_text()}") from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(dashboard.pid, signal.SIGKILL)
    output = sweep.stdout.read()
    assert sweep.returncode == 0, output
    assert len(set(seen)) > 1, seen  # it followed the sweep as the trials came in
    s = study(tmp_path, "long")
    assert len(s.trials) == n_trials and all(t.state.is_finished() for t in s.trials)
    assert len(detail["trials"]) == n_trials
    assert detail["best_trials"][0]["number"] == s.best_trial.number
    assert "optuna-dashboard on http://127.0.0.1" in log.read_text()
    assert status == 0  # Ctrl-C: the server's clean stop
