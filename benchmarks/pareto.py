"""Multi-objective samplers on the shipped multi-objective sweep (``sweeps/sparse.toml``),
against random search at the same budget: the hypervolume of each study's front, 3 sweep
seeds each, tracking and re-runs off (the search alone is compared).

Both objectives are put on [0, 1], to be minimised: 1 - validation accuracy, and the share of
the network's weights that are non-zero; the reference point is (1, 1), the worst of both, so
the hypervolume is the share of that square the front dominates. The baselines (the same
network in every study) are left out.

    python -m benchmarks pareto
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import run_sweep, sweep_config

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "sweeps" / "sparse.toml"
SEEDS = (0, 1, 2)
SAMPLERS = {  # name: options (the shipped sweep's own for tpe)
    "tpe": {"n_startup_trials": 12},
    "nsga2": {"population_size": 16},  # 5 generations in the budget of 80
    "random": {},
}


def normalised_front(study, total_weights: int) -> np.ndarray:
    """Every complete search trial as (1 - accuracy, share of weights non-zero)."""
    from optuna.trial import TrialState

    from pipeline.names import BASELINE

    return np.array(
        [
            (1.0 - t.values[0], t.values[1] / total_weights)
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if not t.user_attrs.get(BASELINE)
        ]
    )


def main() -> None:
    from pipeline.analysis import hypervolume
    from pipeline.core import load
    from pipeline.search import load_study

    probe = sweep_config(SWEEP, "probe")
    d = load(probe.data.name, seed=probe.data.seed, **probe.data.options)
    sizes = [d.X_train.shape[1], *probe.fixed["hidden"], 2]
    total = sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))
    print(
        f"== samplers on {SWEEP.name}: hypervolume of the front (1 - val accuracy, share of "
        f"{total} weights non-zero; reference (1, 1)), {probe.study.n_trials} trials, "
        f"{len(SEEDS)} sweep seeds"
    )
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in SAMPLERS.items():
            volumes, walls = [], []
            for seed in SEEDS:
                folder = Path(tmp) / f"{name}-{seed}"
                folder.mkdir()
                cfg = sweep_config(
                    SWEEP,
                    f"pareto-{name}-{seed}",
                    study={"seed": seed, "repeats": None},
                    sampler={"name": name, **options},
                    tracking={"enabled": False},
                )
                started = time.perf_counter()
                run_sweep(folder, cfg)
                walls.append(time.perf_counter() - started)
                study = load_study(cfg, str(folder / "optuna.journal"))
                volumes.append(hypervolume(normalised_front(study, total), (1.0, 1.0)))
            results[name] = volumes
            print(
                f"{name:7s} hypervolume {np.mean(volumes):.4f} ± {np.std(volumes, ddof=1):.4f} "
                f"({', '.join(f'{v:.4f}' for v in volumes)}), wall {np.mean(walls):.0f} s a study",
                flush=True,
            )
    random = np.array(results["random"])
    for name in ("tpe", "nsga2"):
        ratio = np.array(results[name]) / random  # paired by sweep seed
        paired = ", ".join(f"{r:.3f}" for r in ratio)
        print(f"{name} / random: {np.mean(ratio):.3f} (seed by seed {paired})")
