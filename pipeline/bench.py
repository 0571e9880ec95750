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
from typing import TYPE_CHECKING

from threadpoolctl import threadpool_limits

from pipeline.config import model_kwargs
from pipeline.data import load
from pipeline.mlp import MLP
from pipeline.names import CHAPTER, COMPLETE, FAILED, PRUNED

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

    with threadpool_limits(limits=1, user_api="blas"):
        times = _best_times(
            {"chapter": chapter, "float64": ours("float64"), "float32": ours("float32")}, repeats
        )
    epochs = int(CHAPTER["max_epochs"])
    for name, seconds in times.items():
        ratio = times["chapter"] / seconds
        print(
            f"   {name:8s} {seconds / epochs * 1e6:7.1f} us/epoch   {ratio:4.2f}x the chapter's"
            f" loop   final test MSE {results[name]:.4f}"
        )


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
DEFAULT_SWEEP = ROOT / "sweeps" / "default.toml"


def _bench_config(name: str, unsearch: tuple[str, ...] = (), **sections: dict) -> SweepConfig:
    """The default sweep renamed, without the ``unsearch`` keys, its tables updated."""
    import tomllib

    from pipeline.config import SweepConfig

    raw = tomllib.loads(DEFAULT_SWEEP.read_text())
    raw["study"]["name"] = name
    for key in unsearch:
        del raw["search"][key]
    for table, values in sections.items():
        raw[table] = values if table in ("sampler", "pruner") else {**raw.get(table, {}), **values}
    return SweepConfig(**raw, source=str(DEFAULT_SWEEP))


def _run_sweep(folder: Path, cfg: SweepConfig) -> SweepSummary:
    """A sweep in ``folder`` (fresh stores), its workers started afresh (loky would otherwise
    reuse the previous run's warm processes), its output discarded."""
    from joblib.externals.loky import get_reusable_executor
    from rich.console import Console

    from pipeline.sweep import run_sweep

    get_reusable_executor().shutdown(wait=True)
    with open(os.devnull, "w") as devnull:
        return run_sweep(
            cfg,
            storage=str(folder / "optuna.journal"),
            tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
            console=Console(file=devnull),
        )


def bench_throughput(n_trials: int = 16, epochs: int = 1500) -> None:
    """Trials per second of the workers' phase with 1 and 2 workers. Both runs do the same
    work: the same parameter sets, queued in the same order, at a fixed number of epochs
    (no pruning, no early stopping), with MLflow on."""
    import numpy as np

    from pipeline.study import create_study

    print(
        f"== sweep throughput: default sweep, the same {n_trials} trials ({epochs} epochs, "
        "no pruning) with 1 and 2 workers, MLflow on"
    )
    rng = np.random.default_rng(0)
    params = [
        {
            "keep_prob": float(rng.uniform(0.5, 1.0)),
            "lr": float(rng.uniform(0.005, 0.02)),
            "weight_decay": float(10 ** rng.uniform(-5, -1)),
            "l1": float(10 ** rng.uniform(-6, -2)),
        }
        for _ in range(n_trials)
    ]
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in (1, 2):
            folder = Path(tmp) / f"jobs{jobs}"
            folder.mkdir()
            cfg = _bench_config(
                f"bench-{jobs}",
                unsearch=("patience",),
                study={"n_trials": n_trials, "n_jobs": jobs},
                fixed={"max_epochs": epochs, "patience": 0},
                pruner={"name": "none"},
            )
            study = create_study(cfg, str(folder / "optuna.journal"))
            for p in params:
                study.enqueue_trial(p)
            summary = _run_sweep(folder, cfg)
            done = sum(summary.states[k] for k in (COMPLETE, PRUNED, FAILED))
            rates[jobs] = done / summary.parallel_seconds
            print(
                f"   {jobs} worker(s): {done} trials in {summary.parallel_seconds:5.1f} s "
                f"= {rates[jobs]:.3f} trials/s (training {summary.compute_seconds:.1f} s)"
            )
    print(f"   2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")


def bench_default_sweep() -> None:
    """The default sweep, as `make sweep` runs it, with MLflow tracking on and off."""
    print("== default sweep (sweeps/default.toml), MLflow tracking on and off")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tracking in (True, False):
            folder = Path(tmp) / f"tracking-{tracking}"
            folder.mkdir()
            s = _run_sweep(folder, _bench_config("bench-default", tracking={"enabled": tracking}))
            results[tracking] = s
            print(
                f"   tracking {'on ' if tracking else 'off'}: wall {s.wall_seconds:6.1f} s "
                f"(workers' phase {s.parallel_seconds:5.1f} s on {s.n_jobs} cores), training "
                f"{s.compute_seconds:6.1f} s, MLflow logging in workers {s.tracking_seconds:5.1f}"
                f" s, {s.states[COMPLETE]} complete and {s.states[PRUNED]} pruned trials,"
                " best test MSE "
                f"{s.test_metrics.get('best', {}).get('test_loss', float('nan')):.4f}"
            )
    on, off = results[True], results[False]
    print(
        f"   sweep overhead (start-up, sampling, storage, logging, idle cores) in the "
        f"workers' phase: {on.parallel_overhead:.1%} of training with tracking, "
        f"{off.parallel_overhead:.1%} without"
    )
    print(
        f"   whole sweep, core-seconds not training: "
        f"{(on.wall_seconds * on.n_jobs - on.compute_seconds) / on.compute_seconds:.1%} "
        "of training (includes set-up, test evaluation, study plots)"
    )
    # the two runs sample different trials (parallel TPE), so compare wall per training second
    per_on = on.wall_seconds / on.compute_seconds
    per_off = off.wall_seconds / off.compute_seconds
    print(
        f"   tracking adds {per_on / per_off - 1:.1%} to the wall time per second of training"
        f" (raw wall ratio {on.wall_seconds / off.wall_seconds:.2f}; the runs' trials differ)"
    )


def main() -> None:
    bench_seed_task()
    bench_digits()
    bench_throughput()
    bench_default_sweep()
