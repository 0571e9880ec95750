"""Services that restart mid-sweep on the cluster path: the head starts a service that stopped
again on its port, and the trials' writes wait for it (the storage proxy's calls up to a
minute, MLflow's for minutes) instead of failing. A real loopback cluster: the head, two Dask
workers in empty folders, a sweep; each service killed with -9 in turn while trials run."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest
import requests
from e2e import alive, child_pids, env, free_ports, long_sweep, ui_server, uri_of, wait_for
from mlflow import MlflowClient
from optuna.trial import TrialState

from benchmarks.loopback import LoopbackCluster, postgres, postgres_installed
from pipeline.names import ROLE, ROLE_TRIAL
from pipeline.search import make_storage

pytestmark = pytest.mark.slow
TRIALS = 12


def _service(head: int, fragment: bytes) -> int:
    """The pid of the head's service whose command line holds ``fragment``."""
    (pid,) = child_pids(head, fragment)
    return pid


def _sweep_file(folder: Path) -> Path:
    """Twelve trials of a second or two each: long enough for two restarts in the middle."""
    return long_sweep(folder, max_epochs=8000, name="restarts", n_trials=TRIALS)


def _sweep_through(cluster: LoopbackCluster, folder: Path) -> subprocess.Popen:
    args = ["--cluster", cluster.scheduler, "--storage", cluster.storage]
    args += ["--tracking-uri", cluster.tracking]
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "sweep", str(_sweep_file(folder)), *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(),
    )


def _ends_with_every_trial_complete(cluster: LoopbackCluster, proc: subprocess.Popen) -> None:
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    trials = optuna.load_study(study_name="restarts", storage=make_storage(cluster.storage)).trials
    assert len(trials) == TRIALS and all(t.state == TrialState.COMPLETE for t in trials), [
        (t.number, t.state, t.user_attrs.get("fail_reason")) for t in trials
    ]
    client = MlflowClient(cluster.tracking)
    experiment = client.get_experiment_by_name("restarts").experiment_id
    found = client.search_runs([experiment], max_results=1000)
    assert [r.info.run_name for r in found if r.info.status == "RUNNING"] == []
    assert sum(r.data.tags.get("pipeline.role") == "trial" for r in found) == TRIALS


def _when_complete(cluster: LoopbackCluster, proc: subprocess.Popen, n: int) -> None:
    """Once ``n`` trials are complete (the sweep still running)."""
    storage = make_storage(cluster.storage)

    def complete() -> int:
        try:
            trials = optuna.load_study(study_name="restarts", storage=storage).trials
        except KeyError:
            return 0
        return sum(t.state == TrialState.COMPLETE for t in trials)

    wait_for(lambda: complete() >= n or proc.poll() is not None, 300, f"{n} complete trials")
    assert proc.poll() is None, f"the sweep ended first:\n{proc.communicate()[0]}"


def test_the_storage_proxy_and_the_mlflow_server_restarting_mid_sweep_fail_no_trial(tmp_path):
    (tmp_path / "cluster").mkdir()
    cluster = LoopbackCluster(tmp_path / "cluster")
    try:
        proc = _sweep_through(cluster, tmp_path)
        head_out = cluster.folder / "head.out"
        for n, (fragment, name) in enumerate(
            [(b"storage-proxy", "Optuna storage proxy"), (b"mlflow", "MLflow server")]
        ):
            _when_complete(cluster, proc, 3 * (n + 1))
            os.killpg(_service(cluster.head.pid, fragment), signal.SIGKILL)  # and its own
            again = f"{name} ready again"
            wait_for(lambda again=again: again in head_out.read_text(), 120, again)
        _ends_with_every_trial_complete(cluster, proc)
    finally:
        cluster.stop()


def test_postgresql_restarting_behind_the_storage_proxy_fails_no_trial(tmp_path):
    bin_dir = postgres_installed()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server here: `make test` installs it (apt-get, as root)")
    (tmp_path / "cluster").mkdir()
    with postgres(bin_dir) as server:
        cluster = LoopbackCluster(tmp_path / "cluster", 2, "--storage", server.url)
        try:
            proc = _sweep_through(cluster, tmp_path)
            _when_complete(cluster, proc, 3)
            server.restart()
            _ends_with_every_trial_complete(cluster, proc)
        finally:
            cluster.stop()


def test_the_dask_scheduler_restarting_mid_sweep_is_reported_in_one_line(tmp_path):
    (tmp_path / "cluster").mkdir()
    cluster = LoopbackCluster(tmp_path / "cluster")
    try:
        proc = _sweep_through(cluster, tmp_path)
        _when_complete(cluster, proc, 3)
        os.killpg(_service(cluster.head.pid, b"scheduler"), signal.SIGKILL)
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 1, output
        assert f"the Dask scheduler at {cluster.scheduler} restarted or stopped answering" in (
            output
        )
        assert "run again when you run the same command" in output and "Traceback" not in output
        client = MlflowClient(cluster.tracking)
        experiment = client.get_experiment_by_name("restarts").experiment_id
        parent = client.search_runs([experiment], "tags.`pipeline.role` = 'study'")[0]
        assert parent.info.status == "FAILED"  # ended, with the error in its note
    finally:
        cluster.stop()


def test_the_study_lease_says_nothing_of_a_scheduler_gone_while_it_is_held():
    """The lease's background refresh (every 2 s) fails once the scheduler is gone, and the
    client then closes; the sweep says so in one line, so those failures must not print
    tracebacks (they did when the sweep took longer than a refresh to notice). A real
    scheduler, killed while a process holds the lease for longer than a few refreshes."""
    (port,) = free_ports(1)
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1"]
        + ["--port", str(port), "--no-dashboard"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    holder = f"""
import os, signal, time
import dask
from distributed import Client
from pipeline.search._dask import hold_study

client = Client("tcp://127.0.0.1:{port}", timeout=30, set_as_default=False)
# the client gives up reconnecting after this; the refreshes then fail another way
with dask.config.set({{"distributed.comm.timeouts.connect": "2s"}}):
    with hold_study(client, "lost"):
        os.kill({scheduler.pid}, signal.SIGKILL)
        time.sleep(8)
    time.sleep(3)
print("held")
"""
    try:
        done = subprocess.run(
            [sys.executable, "-c", holder], capture_output=True, text=True, timeout=120, env=env()
        )
        assert "held" in done.stdout, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
    finally:
        scheduler.kill()


def test_sigterm_stops_a_cluster_sweep_with_143_and_the_head_with_all_its_services(tmp_path):
    """As a scheduler stops a job: the sweep's trials on the Dask workers end as interrupted,
    then the head's services stop with it."""
    from benchmarks.ui import _process_tree

    (tmp_path / "cluster").mkdir()
    cluster = LoopbackCluster(tmp_path / "cluster")
    try:
        proc = _sweep_through(cluster, tmp_path)
        _when_complete(cluster, proc, 2)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 143, output
        assert "Traceback" not in output
        trials = optuna.load_study(
            study_name="restarts", storage=make_storage(cluster.storage)
        ).trials
        assert not [t for t in trials if t.state == TrialState.RUNNING]
        client = MlflowClient(cluster.tracking)
        experiment = client.get_experiment_by_name("restarts").experiment_id
        found = client.search_runs([experiment], max_results=1000)
        assert [r.info.run_name for r in found if r.info.status == "RUNNING"] == []
        services = _process_tree(cluster.head.pid)
        assert len(services) >= 4  # the head and its three services
        cluster.head.send_signal(signal.SIGTERM)
        assert cluster.head.wait(timeout=60) == 143
        wait_for(lambda: not any(alive(pid) for pid in services), 30, "the services to end")
    finally:
        cluster.stop()


class _CuttingProxy(http.server.BaseHTTPRequestHandler):
    """Passes MLflow's REST calls on to the server, but cuts off the first answer to each path in
    ``cuts`` halfway, after the server has carried the call out: what a client sees when the
    server is killed while it replies."""

    upstream = ""
    cuts: set[str] = set()
    cut: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._pass_on()

    def do_POST(self) -> None:  # noqa: N802
        self._pass_on()

    def log_message(self, *args: object) -> None:
        pass

    def _pass_on(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
        answer = requests.request(
            self.command, self.upstream + self.path, data=body, headers=headers, timeout=60
        )
        path = self.path.split("?")[0]
        cut = path in self.cuts and path not in self.cut
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        if cut:
            self.cut.append(path)
            self.wfile.write(answer.content[: len(answer.content) // 2])
            self.close_connection = True
            return
        self.wfile.write(answer.content)


def test_an_answer_cut_off_mid_reply_neither_fails_the_trial_nor_logs_it_twice(tmp_path):
    """The server killed while it answers ``runs/create`` may have created the run: the trial's
    run is found again by its token rather than created twice, and the later writes are sent
    again. A real MLflow server behind a proxy that cuts each kind of answer off once."""
    from pipeline.results import TrialResult
    from pipeline.tracking import TrialLogger, prepare_experiment

    with ui_server(tmp_path) as (base, _):
        store = uri_of(tmp_path)
        experiment = prepare_experiment(store, "cut")
        upstream = MlflowClient(store)
        parent = upstream.create_run(experiment, run_name="parent").info.run_id
        _CuttingProxy.upstream = base
        _CuttingProxy.cuts = {
            "/api/2.0/mlflow/runs/create",
            "/api/2.0/mlflow/runs/log-batch",
            "/api/2.0/mlflow/runs/update",
        }
        proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CuttingProxy)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            logger = TrialLogger(f"http://127.0.0.1:{proxy.server_port}", experiment, parent, "cut")
            run_id = logger.start(0, {})
            history = {"epoch": [1.0, 2.0], "train_loss": [0.9, 0.5], "val_loss": [1.0, 0.7]}
            result = TrialResult({"keep_prob": 0.8}, value=0.7, history=history)
            result.metrics = {"final_val_loss": 0.7}
            logger.finish(run_id, result)
        finally:
            proxy.shutdown()
    assert sorted(_CuttingProxy.cut) == sorted(_CuttingProxy.cuts)  # each answer was cut once
    trials = upstream.search_runs([experiment], f"tags.`{ROLE}` = '{ROLE_TRIAL}'")
    assert [r.info.run_id for r in trials] == [run_id]
    (run,) = trials
    assert run.info.status == "FINISHED" and run.data.params == {"keep_prob": "0.8"}
    assert run.data.metrics["final_val_loss"] == 0.7
    assert [m.value for m in upstream.get_metric_history(run_id, "val_loss")] == [1.0, 0.7]
