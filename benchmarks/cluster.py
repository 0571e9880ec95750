"""The cluster's benchmarks (part of ``make bench``; alone: ``python -m benchmarks cluster``).

- The same trials through the local path and through a loopback cluster (the head's services
  and two one-thread Dask workers on this machine): the throughput ratio, and what storage,
  tracking and Dask cost per trial over the network.
- The study storage under load from 1 to 16 client processes: the head's gRPC proxy over a
  journal file (its default), over SQLite and over PostgreSQL, and PostgreSQL reached
  directly; the basis of the README's recommendation and of its limits at 100 and 1000
  workers.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DEFAULT_SWEEP,
    STEPS,
    fill,
    fixed_trials,
    goal,
    machinery_ms,
    run_sweep,
    sweep_config,
)
from benchmarks.loopback import free_ports, loopback_cluster, postgres_installed, postgres_server

REPORTS = 50  # a full-length trial of the default sweep reports 50 times (every max_epochs/50)
CLIENTS = (1, 4, 16)


def bench_cluster_same_trials(n_trials: int = 16, epochs: int = 1500, rounds: int = 5) -> None:
    """The same trials (queued in the same order, fixed epochs, no pruning, no re-runs) with 2
    local worker processes and with 2 Dask workers, local and cluster runs interleaved, the
    best workers' phase of each compared (the same work took 25 to 33 s in consecutive runs on
    this shared machine: the best of five is what each path costs when nothing else runs)."""
    import numpy as np

    print(
        f"== the same {n_trials} trials ({epochs} epochs): 2 local workers against a loopback "
        "cluster (2 one-thread Dask workers, the head's proxy and MLflow server)"
    )
    config, queued = fixed_trials(n_trials, epochs)
    study = {"n_trials": n_trials, "n_jobs": 2, "repeats": None}

    runs: dict[str, list[Any]] = {"local": [], "cluster": []}  # each round's summary
    with tempfile.TemporaryDirectory() as tmp, loopback_cluster(Path(tmp), 2) as cluster:
        for k in range(rounds):
            for where in ("local", "cluster"):
                folder = Path(tmp) / f"{where}-{k}"
                folder.mkdir()
                args = {}
                if where == "cluster":
                    args = {
                        "storage": cluster.storage,
                        "tracking_uri": cluster.tracking,
                        "cluster": cluster.scheduler,
                    }
                cfg = sweep_config(f"bench-{where}-{k}", study=study)
                runs[where].append(run_sweep(folder, cfg, queued, **args))
        rng = np.random.default_rng(0)
        near = sweep_config(DEFAULT_SWEEP, "bench-machinery-near")
        far = sweep_config(DEFAULT_SWEEP, "bench-machinery-far")
        mlflow_db = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        near_ms = _machinery_on(near, str(Path(tmp) / "optuna.journal"), mlflow_db, rng)
        far_ms = _machinery_on(far, cluster.storage, cluster.tracking, rng)
        task_ms = _dask_round_trip_ms(cluster.scheduler)
    phases = {where: [s.parallel_seconds for s in done] for where, done in runs.items()}
    best = {where: min(done, key=lambda s: s.parallel_seconds) for where, done in runs.items()}
    for name, s in best.items():
        print(
            f"   {name:7s}: workers' phase {s.parallel_seconds:5.1f} s, training "
            f"{s.compute_seconds:5.1f} core-s, MLflow logging in the trials "
            f"{s.tracking_seconds / n_trials * 1e3:5.1f} ms a trial\n"
            f"            (the workers' phase in each round: "
            + ", ".join(f"{p:.1f}" for p in phases[name])
            + " s)"
        )
    ratio = best["local"].parallel_seconds / best["cluster"].parallel_seconds
    paired = np.median(np.array(phases["local"]) / np.array(phases["cluster"]))
    print(
        f"   cluster / local throughput, same trials: {ratio:.2f}x   "
        f"(goal >= 0.9x: {goal(ratio >= 0.9)}; best of {rounds} rounds each; the median of "
        f"the rounds' own ratios {paired:.2f}x)"
    )
    print("   per trial, ms (best of 20, study of 100 trials): local files | over loopback")
    for step in STEPS:
        print(f"     {step:14s} {near_ms[step]:8.1f} | {far_ms[step]:8.1f}")
    print(f"     {'Dask task':14s} {'':8s} | {task_ms:8.1f}   (submit and result of an empty task)")


def _machinery_on(cfg: Any, storage: str, tracking_uri: str, rng: Any) -> dict[str, float]:
    from pipeline.search import create_study

    fill(create_study(cfg, storage), cfg, 100, rng)
    return machinery_ms(cfg, storage, tracking_uri, 20, rng)


def _dask_round_trip_ms(scheduler: str, repeats: int = 20) -> float:
    from distributed import Client

    with Client(scheduler, timeout=30, set_as_default=False) as client:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            client.submit(int, 0, pure=False).result()
            times.append(time.perf_counter() - start)
    return min(times) * 1e3


def _joined(bundle: str | None) -> None:
    """This process joins a secure cluster's storage with ``bundle``, or a plain one."""
    import os

    from pipeline.config import ENV

    os.environ.pop(ENV, None)
    if bundle is not None:
        os.environ[ENV] = bundle


def storage_trials(
    url: str, study: str, seconds: float, seed: int, bundle: str | None = None
) -> tuple[int, float]:
    """One client's synthetic trials for ``seconds``, as a cluster task talks to the study:
    the study loaded, then per trial ask, the default sweep's space sampled by TPE,
    :data:`REPORTS` reports each followed by the pruner's question, and tell. Returns the
    trials done and the seconds taken. ``bundle``: a secure proxy's credentials."""
    import numpy as np

    _joined(bundle)
    from pipeline.config import suggest_space
    from pipeline.search import load_study

    cfg = sweep_config(DEFAULT_SWEEP, study, pruner={"name": "median"})
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    loaded = load_study(cfg, url, worker=seed)
    done = 0
    while time.perf_counter() - started < seconds:
        trial = loaded.ask()
        suggest_space(trial, cfg.search)
        for step in range(REPORTS):
            trial.report(float(rng.random()), step)
            trial.should_prune()
        loaded.tell(trial, float(rng.random()))
        done += 1
    return done, time.perf_counter() - started


@contextlib.contextmanager
def _proxy(rdb: str, tls: Path | None = None) -> Iterator[str]:
    """``python -m pipeline storage-proxy`` over ``rdb`` (or a journal) on a free port, behind
    TLS with ``tls`` (a secure head's secrets): its grpc:// URL."""
    from benchmarks.loopback import child_env, wait_for
    from pipeline.config import port_problem, storage_problem

    (port,) = free_ports(1)
    secure = ["--tls-dir", str(tls)] if tls else []
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "storage-proxy", rdb, "--port", str(port), *secure],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    url = f"grpc://127.0.0.1:{port}"
    try:
        if tls is None:
            wait_for(lambda: storage_problem(url) is None, 60, "the storage proxy")
        else:  # its handshake wants the bundle, which the caller's clients hold
            wait_for(lambda: port_problem("127.0.0.1", port) is not None, 60, "the proxy")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def bench_storage_by_clients(seconds: float = 6.0) -> None:
    """Trials per second that each storage serves to 1, 4 and 16 client processes at once,
    each running :func:`storage_trials` on a study of 100 trials; the clients, the proxy and
    the database share this machine's cores, so these are lower bounds of what a head serves
    to workers on other machines."""
    import numpy as np
    from joblib import Parallel, delayed

    from pipeline.search import create_study

    print(
        f"== study storage under load: trials/s served (ms a trial per client), {REPORTS} "
        "reports with pruning checks a trial, study of 100 trials"
    )
    from pipeline.cluster._tls import prepare

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        # a secure head's secrets: the proxy's TLS and client certificate, PostgreSQL's TLS
        tls, bundle = Path(tmp) / "tls", str(Path(tmp) / "credentials.json")
        prepare(tls, Path(bundle), "127.0.0.1", {"scheduler": "", "storage": "", "tracking": ""})
        sqlite = f"sqlite:///{Path(tmp) / 'optuna.db'}"
        journal = str(Path(tmp) / "o.journal")
        storages = {
            "proxy over a journal": (stack.enter_context(_proxy(journal)), None),
            "the same, TLS": (stack.enter_context(_proxy(journal + "2", tls)), bundle),
            "proxy over SQLite": (stack.enter_context(_proxy(sqlite)), None),
        }
        bin_dir = postgres_installed()
        if bin_dir is None:
            print("   PostgreSQL is not installed (make postgres installs it): proxy only")
        else:
            postgres = stack.enter_context(postgres_server(bin_dir))
            storages["proxy over PostgreSQL"] = (stack.enter_context(_proxy(postgres)), None)
            storages["PostgreSQL directly"] = (postgres, None)
            secure = stack.enter_context(postgres_server(bin_dir, tls))
            storages["the same, password+TLS"] = (secure, None)
        print("   " + f"{'clients':22s}" + "".join(f"{n:>18d}" for n in CLIENTS))
        served: dict[str, float] = {}
        for k, (label, (url, joining)) in enumerate(storages.items()):
            cells = []
            for n in CLIENTS:
                name = f"load-{k}-{n}"
                cfg = sweep_config(DEFAULT_SWEEP, name)
                _joined(joining)
                fill(create_study(cfg, url), cfg, 100, np.random.default_rng(0))
                measured = Parallel(n_jobs=n, backend="loky")(
                    delayed(storage_trials)(url, name, seconds, seed, joining) for seed in range(n)
                )
                trials = sum(done for done, _ in measured)
                elapsed = max(took for _, took in measured)
                per_trial = np.mean([took / max(done, 1) for done, took in measured]) * 1e3
                cells.append(f"{trials / elapsed:7.1f} ({per_trial:5.0f} ms)")
                served[label] = max(served.get(label, 0.0), trials / elapsed)
            print("   " + f"{label:22s}" + "".join(f"{c:>18s}" for c in cells))
        _joined(None)
    best = max(served, key=served.get)
    rate = served[best]
    print(
        f"   the {best} serves up to {rate:.1f} such trials/s: enough for {rate * 3:.0f} workers "
        f"whose trials take 3 s (the default sweep's); 100 workers need trials of at least "
        f"{100 / rate:.0f} s, 1000 workers {1000 / rate:.0f} s (or fewer reports: "
        "[pruner] report_every)"
    )


def main() -> None:
    bench_cluster_same_trials()
    bench_storage_by_clients()
