"""A real PostgreSQL server (Debian's, started by the test as an unprivileged user in a temporary
data folder, on loopback) as the study storage: directly, and behind the head's gRPC proxy."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from e2e import free_ports, head_ready, start_head, sweep

from pipeline.study import make_storage

pytestmark = pytest.mark.slow

INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
USER = "nobody"  # PostgreSQL refuses to run as root


def _as_user(*command: str) -> None:
    """Run ``command`` as the unprivileged user; its output to nobody's pipe (the server that
    pg_ctl starts would hold a captured pipe open, and the call would never return)."""
    prefix = ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*prefix, *command],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A database URL on a fresh server; stopped and removed afterwards."""
    if not INITDB:
        pytest.skip("Debian's postgresql is not installed (make postgres installs it, as root)")
    bin_dir = Path(INITDB[-1]).parent
    # not under pytest's folder, which only root may enter
    folder = Path(tempfile.mkdtemp(prefix="pipeline-postgres-"))
    data = folder / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, USER)
        shutil.chown(data, USER)
    (port,) = free_ports(1)
    _as_user(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
    options = f"-p {port} -k {folder} -h 127.0.0.1"
    log = str(folder / "server.log")
    _as_user(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", log, "-w", "start")
    try:
        server = ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
        _as_user(str(bin_dir / "createdb"), *server, "studies")
        yield f"postgresql://postgres@127.0.0.1:{port}/studies"
    finally:
        _as_user(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_a_sweep_keeps_its_study_in_postgresql(postgres, tmp_path):
    done = sweep(tmp_path, "--storage", postgres, "--no-tracking")
    assert done.returncode == 0, done.stdout + done.stderr
    study = optuna.load_study(study_name="smoke", storage=postgres)
    assert len(study.trials) == 8 and all(t.state.is_finished() for t in study.trials)
    again = sweep(tmp_path, "--storage", postgres, "--no-tracking", "--n-trials", "10")
    assert again.returncode == 0, again.stdout + again.stderr  # resumed: 2 more
    assert len(optuna.load_study(study_name="smoke", storage=postgres).trials) == 10


def test_the_head_serves_a_postgresql_study_through_its_proxy(postgres, tmp_path):
    scheduler, storage, _ = ports = free_ports(3)
    head = start_head(tmp_path, *ports, "--storage", postgres)
    try:
        head_ready(tmp_path)
        name = ["--set", "study.name=proxied"]
        done = sweep(tmp_path, "--storage", f"grpc://127.0.0.1:{storage}", "--no-tracking", *name)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        head.terminate()
        head.wait(timeout=60)
    # the proxy wrote into PostgreSQL: the study is there without the proxy
    study = optuna.load_study(study_name="proxied", storage=make_storage(postgres))
    assert len(study.trials) == 8 and all(t.state.is_finished() for t in study.trials)
