"""How sweeps end on the cluster (``python -m benchmarks stops``; about 10 minutes):

- **Started and stopped on the storage proxy, 50 times**: a sweep whose study lives behind the
  head's gRPC proxy is started, stopped (Ctrl-C) once a trial runs, and started again, in a
  loop, this process reading the study through its own gRPC channel meanwhile (as the tests
  do). Half of the sweeps run their trials in local worker processes (the sweep, holding its
  channel, starts them), half on the loopback cluster's Dask workers. Any exit other than 0
  or 130, or gRPC's "epoll_wait error", is an abort: the goal is none.
- **A dead sweep's workers freed**: a sweep keeps both workers of a loopback cluster busy;
  it is stopped by Ctrl-C, SIGTERM or kill -9, and the time until no worker runs a task of it
  is measured from the signal, 3 times each. The goal is under 10 s; a second sweep then gets
  every worker.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import goal
from benchmarks.loopback import child_env, loopback_cluster, wait_for

STRESS_ROUNDS = 50
FREED_REPEATS = 3
FREED_GOAL = 10.0  # seconds


def _long_sweep(folder: Path, name: str) -> Path:
    """Trials that run until they are stopped: no early stopping, no pruning, a stop request
    noticed every 50 epochs."""
    path = folder / f"{name}.toml"
    path.write_text(
        f"""
[study]
name = "{name}"
n_trials = 1000
n_jobs = 2
seed = 0

[data]
name = "sine"
seed = 1

[fixed]
hidden = [16, 16]
lr = 0.05
max_epochs = 10000000

[search]
keep_prob = {{ type = "float", low = 0.5, high = 1.0 }}

[pruner]
name = "none"
report_every = 50
"""
    )
    return path


def _start(folder: Path, sweep_file: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "sweep", str(sweep_file), "--no-tracking", *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(),
    )


def _running(storage: Any, name: str) -> int:
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:  # not created yet
        return 0
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return len(trials)


def _busy_workers(cluster: Any) -> int:
    """Dask workers of the cluster running a task now."""
    with cluster.client() as client:
        busy = client.run(lambda dask_worker: len(dask_worker.state.executing))
    return sum(1 for n in busy.values() if n)


def bench_start_and_stop(cluster: Any, folder: Path) -> None:
    from pipeline.search import make_storage

    print(
        f"== {STRESS_ROUNDS} sweeps on the storage proxy, each stopped (Ctrl-C) once a trial "
        "runs; half with local workers, half on the cluster"
    )
    storage = make_storage(cluster.storage)  # this process's own channel, open throughout
    sweep_file = _long_sweep(folder, "stress")
    aborts, codes, started = [], [], time.perf_counter()
    for k in range(STRESS_ROUNDS):
        on_cluster = ["--cluster", cluster.scheduler] if k % 2 else []
        proc = _start(folder, sweep_file, "--storage", cluster.storage, *on_cluster)
        try:
            wait_for(
                lambda p=proc: _running(storage, "stress") > 0 or p.poll() is not None,
                300,
                "a running trial",
            )
            proc.send_signal(signal.SIGINT)
            output, _ = proc.communicate(timeout=300)
        except BaseException:
            proc.kill()
            raise
        codes.append(proc.returncode)
        if proc.returncode not in (0, 130) or "epoll_wait error" in output:
            aborts.append((k, proc.returncode, output[-400:]))
    took = time.perf_counter() - started
    print(f"  exit statuses: {sorted(set(codes))}; {took / STRESS_ROUNDS:.1f} s a round")
    for k, code, tail in aborts:
        print(f"  round {k}: exit status {code}\n{tail}")
    print(f"  aborts: {len(aborts)} of {STRESS_ROUNDS}: {goal(not aborts)} (none)")


def bench_workers_freed(cluster: Any, folder: Path) -> None:
    from pipeline.search import make_storage

    print(
        "== a dead sweep's workers: seconds from the signal until no worker of the loopback "
        f"cluster runs its tasks ({FREED_REPEATS} times each)"
    )
    storage = make_storage(cluster.storage)
    results: dict[str, list[float]] = {}
    signals = {"Ctrl-C": signal.SIGINT, "SIGTERM": signal.SIGTERM, "kill -9": signal.SIGKILL}
    for how, sig in signals.items():
        for k in range(FREED_REPEATS):
            name = f"freed-{sig.value}-{k}"
            sweep_file = _long_sweep(folder, name)
            on_cluster = ["--storage", cluster.storage, "--cluster", cluster.scheduler]
            proc = _start(folder, sweep_file, *on_cluster)
            wait_for(
                lambda n=name: _busy_workers(cluster) == 2 and _running(storage, n) == 2,
                300,
                "both workers busy",
            )
            signalled = time.monotonic()
            proc.send_signal(sig)
            wait_for(lambda: _busy_workers(cluster) == 0, 120, "the workers freed")
            results.setdefault(how, []).append(time.monotonic() - signalled)
            proc.communicate(timeout=120)
    worst = max(max(times) for times in results.values())
    for how, times in results.items():
        print(
            f"  {how:8s} median {statistics.median(times):5.1f} s, worst {max(times):5.1f} s "
            f"({', '.join(f'{t:.1f}' for t in times)})"
        )
    print(f"  worst {worst:.1f} s: {goal(worst < FREED_GOAL)} (under {FREED_GOAL:.0f} s)")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, loopback_cluster(Path(tmp), 2) as cluster:
        work = Path(tmp) / "sweeps"
        work.mkdir()
        bench_workers_freed(cluster, work)
        bench_start_and_stop(cluster, work)
