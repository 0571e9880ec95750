"""A secure head on one host and a worker and a sweep on another, nothing on loopback: two
network namespaces of this test's own joined by a virtual link (root only; skipped otherwise,
saying why). From each host, every TCP port of the other is scanned once and each open one is
knocked on as an anonymous client would (``anonymous_probe.py``): each refuses, and each is one
that the head or the worker printed. Then a sweep runs across the two hosts with the bundle.
Traffic goes only to the two addresses given here; the namespaces are removed, pass or fail."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import ROOT, SMOKE, env, wait_for

from pipeline.config import read_credentials

pytestmark = pytest.mark.slow

SUBNET = "10.213.7"  # a private /24 of this test's own, inside its own namespaces only
HEAD, WORKER = f"{SUBNET}.1", f"{SUBNET}.2"
PROBE = ROOT / "tests" / "anonymous_probe.py"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def hosts() -> Iterator[tuple[str, str]]:
    """Two namespaces (the head's, the worker's) joined by a veth pair, each with its address
    and its loopback up; removed at the end, pass or fail."""
    if os.geteuid() != 0:
        pytest.skip("two hosts need network namespaces, which only root may create")
    tag = f"{os.getpid() % 100000}"
    a, b = f"regsweep-head-{tag}", f"regsweep-worker-{tag}"
    made = []
    try:
        for name in (a, b):
            _ip("netns", "add", name)
            made.append(name)
        _ip("link", "add", f"rsh{tag}", "type", "veth", "peer", "name", f"rsw{tag}")
        for name, link, address in ((a, f"rsh{tag}", HEAD), (b, f"rsw{tag}", WORKER)):
            _ip("link", "set", link, "netns", name)
            _ip("-n", name, "addr", "add", f"{address}/24", "dev", link)
            _ip("-n", name, "link", "set", link, "up")
            _ip("-n", name, "link", "set", "lo", "up")
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        pytest.skip(f"network namespaces cannot be made here: {err}")
    try:
        yield a, b
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def _on(host: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", host, *command]


def _start(host: str, folder: Path, log: str, *command: str) -> subprocess.Popen:
    return subprocess.Popen(
        _on(host, sys.executable, *command),
        cwd=folder,
        stdout=open(folder / log, "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        env=env(),
        start_new_session=True,
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _printed_ports(text: str, address: str) -> set[int]:
    """The ports a head says its services are ready on, or a worker (Dask's own lines) that
    its worker and nanny listen on."""
    head = rf"ready on {re.escape(address)}:(\d+)"
    worker = (
        rf"(?:Start worker at|Start Nanny at|Listening to):\s+'?tls://{re.escape(address)}:(\d+)"
    )
    return {int(port) for rule in (head, worker) for port in re.findall(rule, text)}


def _probe(host: str, target: str, ca_file: Path) -> dict:
    done = subprocess.run(
        _on(host, sys.executable, str(PROBE), target, str(ca_file)),
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_port_of_a_secure_head_and_worker_refuses_an_anonymous_client(hosts, tmp_path):
    from anonymous_probe import answered

    head_host, worker_host = hosts
    head_dir = tmp_path / "head"
    head_dir.mkdir()
    head = _start(head_host, head_dir, "head.out", "-m", "pipeline", "head", "--host", HEAD)
    worker = None
    try:
        wait_for(
            lambda: (
                "Ctrl-C stops every service" in (head_dir / "head.out").read_text()
                or head.poll() is not None
            ),
            180,
            "the head's services",
        )
        head_said = (head_dir / "head.out").read_text()
        assert head.poll() is None, head_said
        bundle = head_dir / "mlruns" / "head" / "credentials.json"
        ca_file = tmp_path / "ca.pem"
        ca_file.write_text(read_credentials(bundle).ca)

        worker_dir = tmp_path / "worker"
        worker_dir.mkdir()
        worker = _start(
            worker_host, worker_dir, "worker.out", "-m", "pipeline", "worker",
            "--credentials", str(bundle),
        )  # fmt: skip
        wait_for(
            lambda: (
                "Registered to" in (worker_dir / "worker.out").read_text()
                or worker.poll() is not None
            ),
            180,
            "the worker to join",
        )
        worker_said = (worker_dir / "worker.out").read_text()
        assert worker.poll() is None, worker_said

        for target, seen_from, said in (
            (HEAD, worker_host, head_said),
            (WORKER, head_host, worker_said),
        ):
            found = _probe(seen_from, target, ca_file)
            printed = _printed_ports(said, target)
            # every port open beyond loopback is one that was printed, and each printed one
            # is open ...
            assert set(found["ports"]) == printed, (found["ports"], said)
            # ... and refuses an anonymous client of every kind
            for port, tries in found["tried"].items():
                assert answered(tries) == [], f"{target}:{port} answered {answered(tries)}"
        assert len(_printed_ports(head_said, HEAD)) == 3  # the head's three services

        # and a sweep from the worker's host, with the bundle, runs on the cluster
        sweep = subprocess.run(
            _on(worker_host, sys.executable, "-m", "pipeline", "sweep", str(SMOKE))
            + ["--credentials", str(bundle), "--set", "study.n_trials=4"],
            cwd=worker_dir,
            capture_output=True,
            text=True,
            timeout=600,
            env=env(),
        )
        assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    finally:
        for process in (worker, head):
            if process is not None:
                _stop(process)
