"""Speed benchmarks (``make bench``): every figure is a ratio measured side by side in one run.

The machines this runs on are shared and noisy, so each candidate is timed several times,
interleaved with the others, and the best time of each is compared.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

from pipeline.config import model_kwargs
from pipeline.data import load
from pipeline.mlp import MLP
from pipeline.names import CHAPTER

if TYPE_CHECKING:
    from pipeline.config import SweepConfig
    from pipeline.results import SweepSummary

SEED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "seed" / "reference.py"


def _best_times(candidates: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time of each candidate over ``repeats`` interleaved rounds."""
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(repeats):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _import_reference(path: Path) -> ModuleType | None:
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("seed_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_seed_task(repeats: int = 5, reference_path: Path = SEED_REFERENCE) -> None:
    """The chapter's configuration, its 500-point test set evaluated every epoch, against the
    chapter's own loop, both with one BLAS thread (as in a sweep's worker processes)."""
    reference = _import_reference(reference_path)
    print("== seed task: 1-64-64-1 relu, full batch, lr 0.01, wd 0.001, 500 epochs, 1 BLAS thread")
    if reference is None:
        print(f"   {reference_path} not found: nothing to compare against")
        return
    d = load("sine", seed=1)
    results: dict[str, float] = {}

    def ours(dtype: str) -> Callable[[], None]:
        def run() -> None:
            net = MLP(**model_kwargs(CHAPTER), dtype=dtype).fit(
                d.X_train, d.y_train, d.X_test, d.y_test
            )
            results[dtype] = net.history_["val_loss"][-2]  # the chapter's "final" (see mlp.py)

        return run

    def chapter() -> None:
        results["chapter"] = reference.train_net(use_dropout=False)[1][-1]

    def with_option(**option: Any) -> Callable[[], None]:
        def run() -> None:
            MLP(**model_kwargs({**CHAPTER, **option})).fit(d.X_train, d.y_train, d.X_test, d.y_test)

        return run

    options = {  # the chapter's net with one more technique on: what each costs
        "dropconnect 0.9": with_option(connect_keep_prob=0.9),
        "batch norm": with_option(batch_norm=True),
        "input noise 0.1": with_option(input_noise=0.1),
        "mixup 0.2": with_option(mixup_alpha=0.2),
    }
    with threadpool_limits(limits=1, user_api="blas"):
        times = _best_times(
            {
                "chapter": chapter,
                "float64": ours("float64"),
                "float32": ours("float32"),
                **options,
            },
            repeats,
        )
    epochs = int(CHAPTER["max_epochs"])
    for name in ("chapter", "float64", "float32"):
        seconds = times[name]
        ratio = times["chapter"] / seconds
        before = f"   (before the new options: {BEFORE[name]:.0f} us)" if name in BEFORE else ""
        print(
            f"   {name:8s} {seconds / epochs * 1e6:7.1f} us/epoch   {ratio:4.2f}x the chapter's"
            f" loop   final test MSE {results[name]:.4f}{before}"
        )
    for name in options:
        cost = times[name] / times["float64"]
        print(
            f"   {name:16s} {times[name] / epochs * 1e6:7.1f} us/epoch   {cost:4.2f}x float64 off"
        )


# Per-epoch times of the seed task measured on 2026-11-25 before the chapter's other
# techniques joined the core, to show that, off, they cost nothing.
BEFORE = {"float64": 283.0, "float32": 173.0}


def bench_digits(repeats: int = 3, epochs: int = 5) -> None:
    """Epoch time and peak memory on digits, (128, 128), mini-batch 64, Adam."""
    print(f"== digits: 64-128-128-10, Adam, mini-batch 64, {epochs} epochs, 1 BLAS thread")
    d = load("digits", seed=0)
    config = dict(
        hidden=(128, 128),
        task="classification",
        optimizer="adam",
        lr=1e-3,
        batch_size=64,
        max_epochs=epochs,
        seed=0,
    )
    runs = {
        dtype: (
            lambda dtype=dtype: MLP(**config, dtype=dtype).fit(
                d.X_train, d.y_train, d.X_val, d.y_val
            )
        )
        for dtype in ("float64", "float32")
    }
    with threadpool_limits(limits=1, user_api="blas"):
        times = _best_times(runs, repeats)
        for dtype, run in runs.items():
            tracemalloc.start()  # numpy reports its array allocations to tracemalloc
            run()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(
                f"   {dtype}  {times[dtype] / epochs * 1e3:6.2f} ms/epoch"
                f"  ({times['float64'] / times[dtype]:4.2f}x float64)"
                f"   peak memory in fit {peak / 2**20:5.2f} MiB"
            )


ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "sweeps"
DEFAULT_SWEEP = SWEEPS / "default.toml"


def _config(path: Path, name: str, **sections: dict) -> SweepConfig:
    """A shipped sweep renamed, its tables updated (``search`` replaced when given)."""
    import tomllib

    from pipeline.config import SweepConfig

    raw = tomllib.loads(path.read_text())
    raw["study"]["name"] = name
    for table, values in sections.items():
        replace = table in ("sampler", "pruner", "search")
        raw[table] = values if replace else {**raw.get(table, {}), **values}
    return SweepConfig(**raw, source=str(path))


def _run_sweep(
    folder: Path,
    cfg: SweepConfig,
    queued: list[dict] | None = None,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    cluster: str | None = None,
) -> SweepSummary:
    """A sweep with fresh stores (by default in ``folder``), ``queued`` parameter sets enqueued
    first, its workers started afresh (loky would otherwise reuse the previous run's warm
    processes), its output discarded."""
    from joblib.externals.loky import get_reusable_executor
    from rich.console import Console

    from pipeline.study import create_study
    from pipeline.sweep import run_sweep

    storage = storage or str(folder / "optuna.journal")
    study = create_study(cfg, storage)
    for params in queued or []:
        study.enqueue_trial(params)
    get_reusable_executor().shutdown(wait=True)
    with open(os.devnull, "w") as devnull:
        return run_sweep(
            cfg,
            storage=storage,
            tracking_uri=tracking_uri or f"sqlite:///{folder / 'mlflow.db'}",
            console=Console(file=devnull),
            cluster=cluster,
        )


def _same_trials(cfg: SweepConfig, n: int, seed: int = 0) -> list[dict]:
    """``n`` parameter sets drawn at random from the sweep's space: the runs that compare
    machinery run these, in this order, so that TPE's luck does not enter the ratio."""
    import optuna

    from pipeline.config import suggest_space

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    sets = []
    for _ in range(n):
        trial = study.ask()
        sets.append(suggest_space(trial, cfg.search))
        study.tell(trial, 0.0)
    return sets


def fixed_trials(n_trials: int, epochs: int) -> tuple[Callable[..., SweepConfig], list[dict]]:
    """The default sweep's trials at a fixed number of epochs, with no pruning and no early
    stopping, so that every run trains exactly the same networks: a maker of its configs (a
    name, then ``study`` and other tables to update) and ``n_trials`` parameter sets, to be
    queued in the same order."""
    fixed = {"max_epochs": epochs, "patience": 0}
    base = _config(DEFAULT_SWEEP, "bench", fixed=fixed, pruner={"name": "none"})
    search = {k: v.model_dump() for k, v in base.search.items() if k != "patience"}
    queued = _same_trials(_config(DEFAULT_SWEEP, "bench", search=search), n_trials)

    def config(name: str, **sections: dict) -> SweepConfig:
        tables = {"fixed": fixed, "search": search, "pruner": {"name": "none"}}
        return _config(DEFAULT_SWEEP, name, **tables, **sections)

    return config, queued


def _goal(ok: bool) -> str:
    return "meets the goal" if ok else "MISSES the goal"


def bench_same_trials(n_trials: int = 16, epochs: int = 1500) -> None:
    """Throughput with 1 and 2 workers, and the cost of tracking, on the same trials: the same
    parameter sets queued in the same order at a fixed number of epochs (no pruning and no
    early stopping, so every run trains exactly the same networks)."""
    print(
        f"== the same {n_trials} trials of the default sweep ({epochs} epochs, no pruning): "
        "1 and 2 workers, tracking on and off"
    )
    config, queued = fixed_trials(n_trials, epochs)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for jobs, tracking in ((1, True), (2, True), (2, False)):
            folder = Path(tmp) / f"jobs{jobs}-tracking{tracking}"
            folder.mkdir()
            cfg = config(
                f"bench-{jobs}-{tracking}",
                study={"n_trials": n_trials, "n_jobs": jobs},
                tracking={"enabled": tracking},
            )
            s = runs[jobs, tracking] = _run_sweep(folder, cfg, queued)
            print(
                f"   {jobs} worker(s), tracking {'on ' if tracking else 'off'}: workers' phase "
                f"{s.parallel_seconds:5.1f} s, training {s.compute_seconds:5.1f} core-s, "
                f"overhead {s.parallel_overhead:6.1%} of training"
            )
    one, two, off = runs[1, True], runs[2, True], runs[2, False]
    speedup = one.parallel_seconds / two.parallel_seconds
    print(
        f"   2 workers / 1 worker, same trials: {speedup:.2f}x   "
        f"(goal >= 1.9x: {_goal(speedup >= 1.9)})"
    )
    plain = {jobs: _plain_fits(config("bench"), queued, jobs) for jobs in (1, 2)}
    ceiling = plain[1] / plain[2]
    print(
        f"   the same networks fitted with no machinery (joblib alone, same order): 2 processes"
        f" / 1: {ceiling:.2f}x ({plain[1]:.1f} s / {plain[2]:.1f} s): the machine's own ceiling;"
        f" the sweep keeps {speedup / ceiling:.0%} of it"
    )
    added = (two.parallel_seconds - off.parallel_seconds) * 2 / off.compute_seconds
    print(f"   tracking adds {added:.1%} of training time to the workers' phase (same trials)")


def _plain_fits(cfg: SweepConfig, queued: list[dict], jobs: int) -> float:
    """Seconds to train the networks of ``queued`` (validation every epoch, as in a trial) in
    ``jobs`` warm processes with nothing else: no Optuna, no MLflow, no stop checks. Two
    processes on two cores share memory bandwidth and cache, so even this is below 2x."""
    from joblib import Parallel, delayed

    from pipeline.config import trial_values
    from pipeline.evaluation import measure

    d = load(cfg.data.name, seed=cfg.data.seed, **cfg.data.options)
    configs = [trial_values(cfg, params, None) for params in queued]
    with Parallel(n_jobs=jobs, backend="loky") as parallel:
        parallel(delayed(os.getpid)() for _ in range(jobs))  # started and warm before timing
        start = time.perf_counter()
        parallel(delayed(measure)(cfg, values, d) for values in configs)
        return time.perf_counter() - start


def _command(sweep: Path, folder: Path, *args: str) -> tuple[float, dict[str, float]]:
    """``python -m pipeline sweep`` as a user runs it, in ``folder``: its wall time, and the
    parent run's metrics plus the sums of the child runs' train_time, trials and re-runs."""
    import subprocess
    import sys

    from mlflow import MlflowClient

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "sweep",
            str(sweep),
            "--storage",
            str(folder / "optuna.journal"),
            "--tracking-uri",
            uri,
            *args,
        ],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - started
    from pipeline.config import load_sweep

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(load_sweep(sweep).study.name)
    found = client.search_runs([experiment.experiment_id], max_results=50000)
    parent = next(r for r in found if r.data.tags.get("pipeline.role") == "study")
    metrics = dict(parent.data.metrics)
    for role in ("trial", "rerun"):
        metrics[f"{role}s_train_time"] = sum(
            r.data.metrics.get("train_time", 0.0)
            for r in found
            if r.data.tags.get("pipeline.role") == role
        )
    return wall, metrics


def bench_sweep_commands() -> None:
    """The shipped default and moons sweeps as `make sweep` runs them (start-up, set-up, test
    evaluation and study plots included): where the time goes, against the goals.

    Training is every child run's ``train_time``: the trials', and the re-runs' that train the
    top configurations and the baselines again with other seeds after the budget."""
    goals = {"default.toml": 0.90, "moons.toml": 0.40}
    with tempfile.TemporaryDirectory() as tmp:
        for name, goal in goals.items():
            folder = Path(tmp) / name
            folder.mkdir()
            wall, m = _command(SWEEPS / name, folder)
            jobs = m["n_jobs"]
            trials, reruns = m["trials_train_time"], m["reruns_train_time"]
            training = trials + reruns
            share = training / (jobs * wall)
            workers = (m["workers_time"] * jobs - m["train_time"]) / m["train_time"]
            whole = (wall * jobs - training) / training
            start_up = wall - m["wall_time"] - m["finish_time"]  # and the summary, and exit
            end = m["wall_time"] - m["setup_time"] - m["workers_time"] + m["finish_time"]
            print(f"== sweeps/{name}, the command as a user runs it, {int(jobs)} workers")
            print(
                f"   wall {wall:6.1f} s: start-up and exit {start_up:.1f} s, set-up "
                f"{m['setup_time']:.1f} s, workers {m['workers_time']:.1f} s, end {end:.1f} s "
                f"(re-runs, test and peer {m['evaluation_time']:.1f} s; logging and figures "
                f"{m['finish_time']:.1f} s)"
            )
            print(
                f"   training {training:6.1f} core-s (trials {trials:.1f}, re-runs {reruns:.1f}),"
                f" MLflow logging in workers {m['tracking_time']:.1f} s"
            )
            print(
                f"   child runs' train_time / ({int(jobs)} x wall): {share:6.1%}   "
                f"(goal >= {goal:.0%}: {_goal(share >= goal)}; trials alone "
                f"{trials / (jobs * wall):.1%})"
            )
            if name == "default.toml":
                print(
                    f"   workers' phase outside training: {workers:6.1%} of training   "
                    f"(goal <= 5%: {_goal(workers <= 0.05)})"
                )
                print(
                    f"   whole sweep outside training: {whole:6.1%} of training   "
                    f"(goal <= 10%: {_goal(whole <= 0.10)})"
                )
            else:
                tracking = m["tracking_time"] / m["train_time"]
                print(
                    f"   MLflow logging in workers: {tracking:6.1%} of training   "
                    f"(goal <= 25%: {_goal(tracking <= 0.25)})"
                )


STEPS = ("reserve+ask", "suggest (TPE)", "tell", "MLflow log")


def _fill(study: Any, cfg: SweepConfig, n: int, rng: Any) -> None:
    """``n`` finished trials, drawn at random from the sweep's space, added to ``study``."""
    import optuna

    space = optuna.distributions
    dists = {
        k: space.FloatDistribution(p.low, p.high, log=p.log)
        if p.type == "float"
        else space.IntDistribution(p.low, p.high, step=p.step)
        for k, p in cfg.search.items()
    }
    frozen = []
    for _ in range(n):
        params = {
            k: float(rng.uniform(d.low, d.high))
            if isinstance(d, space.FloatDistribution)
            else int(rng.integers(d.low // d.step, d.high // d.step + 1) * d.step)
            for k, d in dists.items()
        }
        frozen.append(
            optuna.trial.create_trial(params=params, distributions=dists, value=float(rng.random()))
        )
    study.add_trials(frozen)


def machinery_ms(
    cfg: SweepConfig, storage: str, tracking_uri: str, repeats: int, rng: Any
) -> dict[str, float]:
    """Best milliseconds of each step around a trial's training (:data:`STEPS`), over
    ``repeats`` trials added to the study of ``cfg`` in ``storage``, logged to an experiment of
    its name in ``tracking_uri``."""
    from pipeline.config import suggest_space
    from pipeline.results import TrialResult
    from pipeline.study import load_study, reserve_trial
    from pipeline.tracking import TrialLogger, prepare_experiment

    name = cfg.study.name
    experiment = prepare_experiment(tracking_uri, name)
    logger = TrialLogger(tracking_uri, experiment, "", name, 100)  # no parent run: ""
    history = {
        "epoch": list(range(1, 301)),
        "train_loss": list(rng.random(300)),
        "val_loss": list(rng.random(300)),
    }
    study = load_study(cfg, storage)
    size = len(study.get_trials(deepcopy=False))
    times: dict[str, list[float]] = {step: [] for step in STEPS}
    for _ in range(repeats):
        t0 = time.perf_counter()
        trial = reserve_trial(study, storage, size + repeats + 1)
        t1 = time.perf_counter()
        values = suggest_space(trial, cfg.search)
        t2 = time.perf_counter()
        study.tell(trial, float(rng.random()))
        t3 = time.perf_counter()
        run_id = logger.start(trial.number, {})
        logger.finish(
            run_id, TrialResult(values, value=1.0, history=history, metrics={"train_time": 1.0})
        )
        t4 = time.perf_counter()
        for step, seconds in zip(STEPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[step].append(seconds)
    return {step: min(v) * 1e3 for step, v in times.items()}


def bench_trial_machinery(sizes: tuple[int, ...] = (100, 1000, 5000), repeats: int = 20) -> None:
    """Milliseconds per trial of the machinery around training (reserve + ask under the
    lock, sampling the default sweep's space with TPE, tell; and logging one trial to MLflow)
    in studies that already hold 100, 1000 and 5000 trials."""
    import numpy as np

    from pipeline.study import create_study

    cfg = _config(DEFAULT_SWEEP, "machinery")
    print(f"== machinery per trial (ms, best of {repeats}) as the study grows, default sweep space")
    print("   trials in study   reserve+ask   suggest (TPE)    tell    MLflow log")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        storage = str(Path(tmp) / "optuna.journal")
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        study = create_study(cfg, storage)
        for size in sizes:
            _fill(study, cfg, size - len(study.get_trials(deepcopy=False)), rng)
            ms = machinery_ms(cfg, storage, uri, repeats, rng)
            row = "   ".join(f"{ms[step]:10.1f}" for step in STEPS)
            print(f"   {size:15d}   {row}")


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


def main() -> None:
    bench_seed_task()
    bench_digits()
    bench_trial_machinery()
    bench_same_trials()
    bench_sweep_commands()
    bench_ui()
    from pipeline import bench_cluster  # it builds on this module's helpers

    bench_cluster.main()
