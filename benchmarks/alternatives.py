"""Optuna's alternatives against what a shipped sweep uses, side by side: the same sweep file
with one table's ``name`` replaced, 3 sweep seeds each, tracking off; the wall time and the
pick's test metric (mean ± sd over the seeds).

- pruners: the Wilcoxon pruner (made for per-fold scores) on the cross-validated sweeps;
- samplers: the Gaussian-process sampler on the sweeps of a few dozen trials, and on the
  default sweep (150 trials) for its cost.

    python -m benchmarks pruners
    python -m benchmarks samplers
"""

from __future__ import annotations

import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

from benchmarks.quality import ROOT, SEEDS, run_one

COMPARISONS = {  # table: (the alternative, the shipped sweeps it is tried on)
    "pruner": ("wilcoxon", ("moons", "breast_cancer")),  # the sweeps with study.folds
    "sampler": ("gp", ("moons", "breast_cancer", "default")),
}
DEFAULTS = {"pruner": "median", "sampler": "tpe"}  # a sweep file's, when its table is absent


def with_choice(sweep: Path, table: str, name: str | None, folder: Path) -> Path:
    """The sweep file with ``[table] name`` set to ``name`` and the table's options dropped
    (they belong to the shipped choice); None: the file as shipped."""
    if name is None:
        return sweep
    text = sweep.read_text()
    head, found, rest = text.partition(f"[{table}]")
    tail = rest.split("\n[", 1) if found else ["", rest]
    after = f"\n[{tail[1]}" if len(tail) > 1 and tail[1] else ""
    path = folder / f"{sweep.stem}-{name}.toml"
    path.write_text(f'{head}{after}\n[{table}]\nname = "{name}"\n')
    tomllib.loads(path.read_text())  # still a sweep file
    return path


def compare(table: str) -> None:
    alternative, sweeps = COMPARISONS[table]
    print(f"== {table}s: {alternative} against the shipped one, {len(SEEDS)} sweep seeds")
    with tempfile.TemporaryDirectory() as tmp:
        for name in sweeps:
            sweep = ROOT / "sweeps" / f"{name}.toml"
            shipped = tomllib.loads(sweep.read_text()).get(table, {}).get("name", DEFAULTS[table])
            for choice in (None, alternative):
                path = with_choice(sweep, table, choice, Path(tmp))
                walls, picks = [], []
                for seed in SEEDS:
                    started = time.perf_counter()
                    values, key, _ = run_one(path, seed, Path(tmp))
                    walls.append(time.perf_counter() - started)
                    picks.append(values.get("best", np.nan))
                label = choice or f"{shipped} (shipped)"
                print(
                    f"{name:14s} {label:16s} wall {np.mean(walls):6.1f} ± {np.std(walls):4.1f} s"
                    f"  pick {key} {np.mean(picks):.4f} ± {np.std(picks, ddof=1):.4f}",
                    flush=True,
                )
