"""Speed benchmarks (``make bench``): every figure is a ratio measured side by side in one run.

The machines this runs on are shared and noisy, so each candidate is timed several times,
interleaved with the others, and the best time of each is compared.
"""

from __future__ import annotations

import importlib.util
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from threadpoolctl import threadpool_limits

from pipeline.data import load
from pipeline.mlp import MLP

SEED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "seed" / "reference.py"
CHAPTER = dict(hidden=(64, 64), lr=0.01, max_epochs=500, weight_decay=0.001, seed=42)


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
            net = MLP(**CHAPTER, dtype=dtype).fit(d.X_train, d.y_train, d.X_test, d.y_test)
            results[dtype] = net.history_["val_loss"][-2]  # the chapter's "final" (see mlp.py)

        return run

    def chapter() -> None:
        results["chapter"] = reference.train_net(use_dropout=False)[1][-1]

    with threadpool_limits(limits=1, user_api="blas"):
        times = _best_times(
            {"chapter": chapter, "float64": ours("float64"), "float32": ours("float32")}, repeats
        )
    epochs = CHAPTER["max_epochs"]
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


def main() -> None:
    bench_seed_task()
    bench_digits()
