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
from pipeline.core import MLP, load
from pipeline.names import CHAPTER

if TYPE_CHECKING:
    from pipeline.config import SweepConfig

from benchmarks.common import (
    DEFAULT_SWEEP,
    STEPS,
    SWEEPS,
    best_times,
    fill,
    fixed_trials,
    goal,
    machinery_ms,
    run_sweep,
    sweep_config,
)

SEED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "seed" / "reference.py"


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
        times = best_times(
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
        times = best_times(runs, repeats)
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
            cfg = sweep_config(
                f"bench-{jobs}-{tracking}",
                study={"n_trials": n_trials, "n_jobs": jobs},
                tracking={"enabled": tracking},
            )
            s = runs[jobs, tracking] = run_sweep(folder, cfg, queued)
            print(
                f"   {jobs} worker(s), tracking {'on ' if tracking else 'off'}: workers' phase "
                f"{s.parallel_seconds:5.1f} s, training {s.compute_seconds:5.1f} core-s, "
                f"overhead {s.parallel_overhead:6.1%} of training"
            )
    one, two, off = runs[1, True], runs[2, True], runs[2, False]
    speedup = one.parallel_seconds / two.parallel_seconds
    print(
        f"   2 workers / 1 worker, same trials: {speedup:.2f}x   "
        f"(goal >= 1.9x: {goal(speedup >= 1.9)})"
    )
    plain = {jobs: _plain_fits(sweep_config("bench"), queued, jobs) for jobs in (1, 2)}
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
    from pipeline.search import measure

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
                f"(goal >= {goal:.0%}: {goal(share >= goal)}; trials alone "
                f"{trials / (jobs * wall):.1%})"
            )
            if name == "default.toml":
                print(
                    f"   workers' phase outside training: {workers:6.1%} of training   "
                    f"(goal <= 5%: {goal(workers <= 0.05)})"
                )
                print(
                    f"   whole sweep outside training: {whole:6.1%} of training   "
                    f"(goal <= 10%: {goal(whole <= 0.10)})"
                )
            else:
                tracking = m["tracking_time"] / m["train_time"]
                print(
                    f"   MLflow logging in workers: {tracking:6.1%} of training   "
                    f"(goal <= 25%: {goal(tracking <= 0.25)})"
                )


def bench_trial_machinery(sizes: tuple[int, ...] = (100, 1000, 5000), repeats: int = 20) -> None:
    """Milliseconds per trial of the machinery around training (reserve + ask under the
    lock, sampling the default sweep's space with TPE, tell; and logging one trial to MLflow)
    in studies that already hold 100, 1000 and 5000 trials."""
    import numpy as np

    from pipeline.search import create_study

    cfg = sweep_config(DEFAULT_SWEEP, "machinery")
    print(f"== machinery per trial (ms, best of {repeats}) as the study grows, default sweep space")
    print("   trials in study   reserve+ask   suggest (TPE)    tell    MLflow log")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        storage = str(Path(tmp) / "optuna.journal")
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        study = create_study(cfg, storage)
        for size in sizes:
            fill(study, cfg, size - len(study.get_trials(deepcopy=False)), rng)
            ms = machinery_ms(cfg, storage, uri, repeats, rng)
            row = "   ".join(f"{ms[step]:10.1f}" for step in STEPS)
            print(f"   {size:15d}   {row}")


def main() -> None:
    bench_seed_task()
    bench_digits()
    bench_trial_machinery()
    bench_same_trials()
    bench_sweep_commands()
