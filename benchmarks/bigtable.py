"""A big table through ``init`` and a short sweep (``python -m benchmarks bigtable``; about
10 minutes): 200,000 rows and 50 columns, a quarter of them categorical, 5% of every column
missing, a binary target of both kinds of input. It measures where the time goes (reading,
planning the columns, preprocessing a split, training) and, for ``sweep --n-trials 10`` on 2
workers with ``init``'s template as written, the wall time, seconds per trial and the peak
memory of each process. Goals: under 10 minutes, under 2 GiB a worker.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import goal
from benchmarks.loopback import child_env

ROWS, COLUMNS, CATEGORICAL_SHARE, MISSING = 200_000, 50, 0.25, 0.05
TRIALS, WORKERS = 10, 2
WALL_GOAL, MEMORY_GOAL = 600.0, 2 * 1024**3


def big_table(rows: int = ROWS, columns: int = COLUMNS, seed: int = 0) -> pd.DataFrame:
    """``rows`` x ``columns`` features (a quarter categorical, 3 to 30 levels) with gaps, and
    ``y`` (``yes``/``no``) from a nonlinear function of a few of each kind."""
    rng = np.random.default_rng(seed)
    n_categorical = round(columns * CATEGORICAL_SHARE)
    frame = {}
    signal = np.zeros(rows)
    for i in range(columns - n_categorical):
        values = rng.normal(0, 1, rows)
        signal += (np.sin(values) if i % 2 else values) * (1.0 if i < 6 else 0.0)
        frame[f"num{i}"] = values.round(4)
    for i in range(n_categorical):
        levels = 3 + (i * 7) % 28
        codes = rng.integers(0, levels, rows)
        effect = rng.normal(0, 1, levels) if i < 3 else np.zeros(levels)
        signal += effect[codes]
        frame[f"cat{i}"] = np.array([f"level-{k}" for k in range(levels)])[codes]
    table = pd.DataFrame(frame)
    for column in table.columns:
        table.loc[rng.random(rows) < MISSING, column] = np.nan
    table["y"] = np.where(signal + rng.normal(0, 1, rows) > np.median(signal), "yes", "no")
    return table


def _stages(path: Path) -> dict[str, float]:
    """Seconds of each stage of loading the table in one process."""
    from pipeline.core import column_transformer, load, plan_columns, read_table
    from pipeline.core._preprocessing import as_columns

    timings = {}
    start = time.perf_counter()
    frame = read_table(path)
    timings["reading"] = time.perf_counter() - start
    start = time.perf_counter()
    plan = plan_columns(frame.drop(columns="y"))
    timings["planning the columns"] = time.perf_counter() - start
    start = time.perf_counter()
    train = frame.sample(frac=0.6, random_state=0)
    column_transformer(plan).fit_transform(as_columns(plan, train))
    timings["preprocessing a split (fit + transform, 60% of rows)"] = time.perf_counter() - start
    start = time.perf_counter()
    load("csv", path=str(path), target="y", task="classification")
    timings["loading it whole (read, plan, split, preprocess)"] = time.perf_counter() - start
    return timings


class _PeakMemory:
    """The peak resident memory of each process under ``pid``, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peaks, self._stop = pid, {}, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        root = psutil.Process(self.pid)
        while not self._stop.wait(0.2):
            try:
                processes = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for p in processes:
                try:
                    name = " ".join(p.cmdline()[1:4])
                    self.peaks[(p.pid, name)] = max(
                        self.peaks.get((p.pid, name), 0), p.memory_info().rss
                    )
                except psutil.Error:
                    continue

    def stop(self) -> dict[tuple[int, str], int]:
        self._stop.set()
        self._thread.join()
        return self.peaks


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "big.csv"
        big_table().to_csv(path, index=False)
        print(f"table: {ROWS} rows x {COLUMNS} columns, {path.stat().st_size / 1e6:.0f} MB")
        for stage, seconds in _stages(path).items():
            print(f"  {stage}: {seconds:.1f} s")
        env = child_env()
        start = time.perf_counter()
        command = [sys.executable, "-m", "pipeline"]
        subprocess.run(
            [*command, "init", str(path), "--target", "y", "--out", "big.toml"],
            cwd=folder,
            env=env,
            check=True,
            capture_output=True,
        )
        print(f"init: {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        sweep = subprocess.Popen(
            [*command, "sweep", "big.toml", "--n-trials", str(TRIALS), "--n-jobs", str(WORKERS)],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        memory = _PeakMemory(sweep.pid)
        output, _ = sweep.communicate()
        wall = time.perf_counter() - start
        peaks = memory.stop()
        if sweep.returncode != 0:
            print(output[-3000:])
            raise SystemExit(f"the sweep failed (exit {sweep.returncode})")
        print(_trial_times(folder))
        print(
            "\n".join(line for line in output.splitlines() if line.startswith(("big", "  "))) or ""
        )
        workers = [rss for (_, name), rss in peaks.items() if "loky" in name or "worker" in name]
        parent = max((rss for (pid, _), rss in peaks.items() if pid == sweep.pid), default=0)
        worst = max(workers, default=0)
        print(
            f"sweep of {TRIALS} trials on {WORKERS} workers: {wall:.0f} s {goal(wall < WALL_GOAL)}"
        )
        gib = 1024**3
        print(
            f"peak memory: a worker {worst / gib:.2f} GiB {goal(worst < MEMORY_GOAL)}, "
            f"the sweep's process {parent / gib:.2f} GiB"
        )


def _trial_times(folder: Path) -> str:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(folder / "mlruns" / "optuna.journal")))
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    seconds = [t.duration.total_seconds() for t in trials if t.duration is not None]
    return (
        f"seconds a trial: median {np.median(seconds):.1f}, longest {max(seconds):.1f} "
        f"({len(seconds)} trials)"
    )
