"""`python -m pipeline head`: the shared services (Dask scheduler, Optuna's gRPC storage proxy,
an MLflow server with artifact proxying) as real processes on loopback, a sweep through them,
and the refusals that must come within seconds."""

from __future__ import annotations

import signal
import socket
import time

import optuna
import pytest
from e2e import alive, free_ports, head_ready, start_head, sweep, wait_for
from mlflow import MlflowClient

from pipeline.cluster import HeadError, binding_warning, is_secure
from pipeline.config import grpc_address
from pipeline.search import make_storage


def _process_tree(root: int) -> list[int]:
    from benchmarks.ui import _process_tree

    return _process_tree(root)


@pytest.mark.slow
def test_a_sweep_through_the_head_services_lands_there_and_ctrl_c_stops_them_all(tmp_path):
    scheduler, storage, mlflow = free_ports(3)
    head = start_head(tmp_path, scheduler, storage, mlflow)
    try:
        printed = head_ready(tmp_path)
        for name, port in (("Dask", scheduler), ("storage proxy", storage), ("MLflow", mlflow)):
            assert f"{name}" in printed and f"127.0.0.1:{port}" in printed
        assert f".venv/bin/python -m pipeline worker tcp://127.0.0.1:{scheduler}" in printed
        line = f"--storage grpc://127.0.0.1:{storage} --tracking-uri http://127.0.0.1:{mlflow}"
        assert f"--cluster tcp://127.0.0.1:{scheduler} {line}" in printed
        # Dask's scheduler answers as a scheduler does
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{scheduler}", timeout=30) as client:
            assert client.scheduler_info()["address"] == f"tcp://127.0.0.1:{scheduler}"

        # the sweep, from another folder: what reaches the head's folder came through them
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        done = sweep(elsewhere, *line.split())
        assert done.returncode == 0, done.stdout + done.stderr
        study = optuna.load_study(
            study_name="smoke", storage=make_storage(f"grpc://127.0.0.1:{storage}")
        )
        assert len(study.trials) == 8 and all(t.state.is_finished() for t in study.trials)
        assert (tmp_path / "mlruns" / "head" / "optuna.journal").is_file()
        mlflow_client = MlflowClient(f"http://127.0.0.1:{mlflow}")
        experiment = mlflow_client.get_experiment_by_name("smoke").experiment_id
        found = mlflow_client.search_runs([experiment], max_results=100)
        roles = [r.data.tags.get("pipeline.role") for r in found]
        assert roles.count("study") == 1 and roles.count("trial") == 8
        trials = [r for r in found if r.data.tags.get("pipeline.role") == "trial"]
        complete = [r for r in trials if r.data.tags.get("state") == "complete"]
        assert complete
        for run in complete:  # uploaded over HTTP into the head's artifact folder
            files = {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
            assert {"history.csv", "model.npz"} <= files
        assert any((tmp_path / "mlruns" / "head" / "artifacts").rglob("model.npz"))

        services = _process_tree(head.pid)
        assert len(services) >= 4  # the head and its three services
        head.send_signal(signal.SIGINT)
        assert head.wait(timeout=60) == 130
        wait_for(lambda: not any(alive(pid) for pid in services), 30, "the services to end")
    finally:
        if head.poll() is None:
            head.kill()


@pytest.mark.slow
def test_the_head_refuses_a_port_in_use_before_starting_anything(tmp_path):
    scheduler, storage = free_ports(2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        mlflow = taken.getsockname()[1]
        started = time.monotonic()
        head = start_head(tmp_path, scheduler, storage, mlflow)
        assert head.wait(timeout=60) == 2
        assert time.monotonic() - started < 30
    printed = (tmp_path / "head.out").read_text()
    assert f"port {mlflow} (MLflow server) cannot be used on 127.0.0.1" in printed
    assert "--mlflow-port" in printed and "ready on" not in printed
    assert not (tmp_path / "mlruns").exists()  # nothing started, nothing written


@pytest.mark.slow
def test_a_sweep_pointing_at_no_storage_proxy_fails_within_seconds_in_one_line(tmp_path):
    (port,) = free_ports(1)
    started = time.monotonic()
    done = sweep(tmp_path, "--storage", f"grpc://127.0.0.1:{port}", "--no-tracking")
    assert done.returncode == 2
    assert time.monotonic() - started < 30
    assert f"no Optuna storage proxy answers at 127.0.0.1:{port}" in done.stderr
    assert not (tmp_path / "mlruns").exists()


def test_a_storage_proxy_address_is_host_and_port():
    assert grpc_address("grpc://head.lab:13000") == ("head.lab", 13000)
    with pytest.raises(ValueError, match="grpc://HOST:PORT"):
        grpc_address("grpc://head.lab")


def test_beyond_loopback_the_head_is_secure_unless_insecure_is_said_with_what_it_exposes():
    assert not is_secure("127.0.0.1", secure=False, insecure=False)
    assert is_secure("127.0.0.1", secure=True, insecure=False)
    assert is_secure("0.0.0.0", secure=False, insecure=False)
    assert is_secure("10.1.2.3", secure=False, insecure=False)
    assert not is_secure("0.0.0.0", secure=False, insecure=True)
    with pytest.raises(HeadError, match="choose one"):
        is_secure("0.0.0.0", secure=True, insecure=True)
    assert binding_warning("127.0.0.1") is None
    assert binding_warning("0.0.0.0", secure=True) is None
    warning = binding_warning("0.0.0.0", secure=False)
    assert warning is not None
    for exposed in ("run code on every worker", "every study", "every run", "TLS"):
        assert exposed in warning


def test_beyond_loopback_mlflow_answers_to_the_names_the_printed_lines_use():
    import socket

    from mlflow.server.security_utils import is_allowed_host_header

    from pipeline.cluster._head import _connectable, allowed_hosts

    allowed = allowed_hosts("0.0.0.0")
    for host in (_connectable("0.0.0.0"), socket.getfqdn(), "127.0.0.1", "10.1.2.3"):
        assert is_allowed_host_header(allowed, f"{host}:5001"), host
    assert not is_allowed_host_header(allowed, "evil.example.com:5001")


@pytest.mark.slow
def test_beyond_loopback_the_head_is_secure_and_answers_at_the_machine_s_name(tmp_path):
    """`--host 0.0.0.0` without --insecure: TLS and a login, reached as other machines reach
    it, by this machine's name (its certificate's names, MLflow's host check)."""
    import grpc
    import requests
    from distributed import Client

    from pipeline.config import read_credentials

    scheduler, storage, mlflow = free_ports(3)
    head = start_head(tmp_path, scheduler, storage, mlflow, "--host", "0.0.0.0")
    try:
        printed = head_ready(tmp_path)
        assert "--insecure" not in printed and "--credentials credentials.json" in printed
        bundle = read_credentials(tmp_path / "mlruns" / "head" / "credentials.json")
        name = socket.gethostname()
        assert bundle.scheduler == f"tls://{name}:{scheduler}"
        assert bundle.storage == f"grpc://{name}:{storage}"
        assert bundle.tracking == f"https://{name}:{mlflow}"
        with Client(bundle.scheduler, timeout=30, security=bundle.dask_security()) as client:
            assert client.scheduler_info()["address"].startswith("tls://")
        channel = grpc.secure_channel(f"{name}:{storage}", bundle.grpc_credentials())
        grpc.channel_ready_future(channel).result(timeout=30)  # the name is the certificate's
        channel.close()
        search = f"{bundle.tracking}/api/2.0/mlflow/experiments/search?max_results=1"
        login = (bundle.username, bundle.password)
        answer = requests.get(search, timeout=10, verify=str(bundle.ca_file()), auth=login)
        assert answer.ok, answer.text  # not "Invalid Host header"
        assert requests.get(search, timeout=10, verify=str(bundle.ca_file())).status_code == 401
    finally:
        head.send_signal(signal.SIGINT)
        head.wait(timeout=60)
