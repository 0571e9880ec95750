"""The MLflow UI as ``pipeline ui`` starts it against MLflow's defaults: time to answer, memory."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _process_tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _pss_mib(pids: list[int]) -> float:
    """Proportional set size of processes, MiB: shared pages counted once in all."""
    total = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += sum(
            int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")
        )
    return total / 1024


def _serve(command: list[str], port: int, settle: float = 5.0) -> tuple[float, int, float]:
    """Start a UI server; (seconds until its REST API answers the UI's first call, processes
    and PSS in MiB ``settle`` seconds later); then stop it."""
    import signal
    import subprocess
    import urllib.request

    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=10"
    started = time.perf_counter()
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while time.perf_counter() - started < 180:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:  # not listening yet
                time.sleep(0.1)
        ready = time.perf_counter() - started
        time.sleep(settle)
        tree = _process_tree(server.pid)
        return ready, len(tree), _pss_mib(tree)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def bench_ui(repeats: int = 2) -> None:
    """``python -m pipeline ui`` (one worker, no job runner) against MLflow's own defaults,
    over the same store: how soon the UI answers, in how many processes and how much memory."""
    import sys

    from pipeline.tracking import prepare_experiment

    print(f"== the MLflow UI over one store (best of {repeats}, interleaved)")
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        prepare_experiment(uri, "bench")  # a store as a sweep leaves it, made beforehand
        commands = {
            "python -m pipeline ui": [sys.executable, "-m", "pipeline", "ui"],
            "mlflow ui (its defaults)": [sys.executable, "-m", "mlflow", "ui"],
        }
        options = {
            "python -m pipeline ui": ["--tracking-uri", uri],
            "mlflow ui (its defaults)": ["--backend-store-uri", uri, "--host", "127.0.0.1"],
        }
        results: dict[str, list[tuple[float, int, float]]] = {name: [] for name in commands}
        for _ in range(repeats):
            for name, command in commands.items():
                port = _free_port()
                results[name].append(_serve([*command, "--port", str(port), *options[name]], port))
        print("   server                      ready (s)   processes   memory (PSS, MiB)")
        best = {}
        for name, runs in results.items():
            best[name] = (min(r[0] for r in runs), max(r[1] for r in runs), max(r[2] for r in runs))
            ready, processes, memory = best[name]
            print(f"   {name:26s} {ready:9.1f}   {processes:9d}   {memory:17.0f}")
        ours, theirs = best["python -m pipeline ui"], best["mlflow ui (its defaults)"]
        print(
            f"   pipeline ui: ready {theirs[0] / ours[0]:.1f}x sooner, in "
            f"{ours[2] / theirs[2]:.0%} of the memory"
        )
