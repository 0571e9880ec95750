"""The Wilcoxon pruner against the shipped default on the cross-validated sweeps: the same
sweep with ``[pruner] name = "wilcoxon"`` and with its own pruner, 3 sweep seeds each, tracking
off; the wall time and the pick's test metric, side by side.

    python -m benchmarks pruners
"""

from __future__ import annotations

import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

from benchmarks.quality import ROOT, SEEDS, run_one

SWEEPS = ("moons", "breast_cancer")  # the shipped sweeps with study.folds


def _with_pruner(sweep: Path, pruner: str | None, folder: Path) -> Path:
    """The sweep file, its pruner replaced (None: as shipped)."""
    if pruner is None:
        return sweep
    text = sweep.read_text()
    head, _, rest = text.partition("[pruner]")
    tail = rest.split("\n[", 1)
    after = f"\n[{tail[1]}" if len(tail) > 1 else ""
    path = folder / f"{sweep.stem}-{pruner}.toml"
    path.write_text(f'{head}[pruner]\nname = "{pruner}"\n{after}')
    tomllib.loads(path.read_text())  # still a sweep file
    return path


def main() -> None:
    print(f"== pruners on the cross-validated sweeps, {len(SEEDS)} sweep seeds (mean ± sd)")
    with tempfile.TemporaryDirectory() as tmp:
        for name in SWEEPS:
            sweep = ROOT / "sweeps" / f"{name}.toml"
            shipped = tomllib.loads(sweep.read_text()).get("pruner", {}).get("name", "median")
            for pruner in (None, "wilcoxon"):
                path = _with_pruner(sweep, pruner, Path(tmp))
                walls, picks = [], []
                for seed in SEEDS:
                    started = time.perf_counter()
                    values, key, _ = run_one(path, seed, Path(tmp))
                    walls.append(time.perf_counter() - started)
                    picks.append(values.get("best", np.nan))
                label = pruner or f"{shipped} (shipped)"
                print(
                    f"{name:14s} {label:20s} wall {np.mean(walls):6.1f} ± {np.std(walls):4.1f} s"
                    f"  pick {key} {np.mean(picks):.4f} ± {np.std(picks, ddof=1):.4f}",
                    flush=True,
                )
