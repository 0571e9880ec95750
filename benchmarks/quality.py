"""How good the answer is (``make bench-quality``): every shipped data set's sweep run with 3
sweep seeds (the sampler's, the networks' and the re-runs' seeds; the data split stays), and
on the test split the pick, the unregularised baseline and scikit-learn's MLP (as it comes,
and alpha chosen by GridSearchCV), mean ± standard deviation and median over the seeds, with each
study's wall time. Tracking is off: this measures the answer, not the machinery.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.search import DEFAULT, TUNED_ALPHA

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("default", "breast_cancer", "digits", "moons")
SEEDS = (0, 1, 2)
# the delivered model (trained once more on all non-test data, tested once; one refit, or an
# ensemble of refits with one refit beside it), the pick's re-runs' mean, the unregularised
# baseline, scikit-learn's MLP as it comes and tuned
COLUMNS = {"delivered": "delivered", "refit": "one refit", "best": "pick (re-runs)"}
COLUMNS["unregularised"] = "unregularised"
COLUMNS |= {DEFAULT: "peer as it comes", TUNED_ALPHA: "peer GridSearchCV"}


def run_one(sweep: Path, seed: int, folder: Path) -> tuple[dict[str, float], str, float]:
    """One sweep with ``seed``: the test metric of each row, its name, the wall time."""
    from rich.console import Console

    from pipeline.config import load_sweep, parse_override
    from pipeline.search import run_sweep

    overrides = [f"study.seed={seed}", f"study.name=quality-{sweep.stem}-{seed}"]
    overrides.append("tracking.enabled=false")
    cfg = load_sweep(sweep, [parse_override(o) for o in overrides])
    key = "test_accuracy" if cfg.task == "classification" else "test_loss"
    started = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        summary = run_sweep(
            cfg, storage=str(folder / f"{sweep.stem}-{seed}.journal"), console=Console(file=devnull)
        )
    wall = time.perf_counter() - started
    rows = summary.test_metrics | summary.peers | {"delivered": summary.delivered}
    if cfg.study.deliver == "ensemble":  # beside it, one refit from the study's seed
        from pipeline.core import refit_split
        from pipeline.search import load_data, refit

        d = refit_split(load_data(cfg))  # every non-test row, preprocessed on those rows
        single = refit(cfg, summary.best, d, summary.delivered["epochs"])
        rows["refit"] = {f"test_{k}": v for k, v in single.evaluate(d.X_test, d.y_test).items()}
    return {name: float(rows[name][key]) for name in COLUMNS if name in rows}, key, wall


def _verdict(pick: np.ndarray, other: np.ndarray, higher_is_better: bool) -> str:
    """The pick against another row, by their medians over the sweep seeds: beats, matches
    (equal medians), or loses; "within noise" where the difference is smaller than the
    standard deviation of the paired differences over the seeds."""
    gap = float(np.median(pick) - np.median(other)) * (1 if higher_is_better else -1)
    verdict = "beats" if gap > 0 else "matches" if gap == 0 else "loses"
    noise = float(np.std(pick - other, ddof=1)) if len(pick) > 1 else 0.0
    if gap != 0 and abs(gap) < noise:
        verdict += " (within noise)"
    return verdict


def main(
    names: tuple[str, ...] = SHIPPED, seeds: tuple[int, ...] = SEEDS, tables_only: bool = False
) -> None:
    """The shipped sweeps, then the new-data template on data sets no sweep was written for
    (``tables_only``: on the raw tables alone)."""
    from benchmarks.datasets import TABLES, new_data_sweeps

    print(f"== the answer on the test split, {len(seeds)} sweep seeds (mean ± sd; median)")
    total = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if names:
            print("-- the shipped sweeps")
            table({name: ROOT / "sweeps" / f"{name}.toml" for name in names}, seeds, Path(tmp))
        print("-- `python -m pipeline init`'s template on data sets no sweep was written for")
        sweeps = new_data_sweeps(Path(tmp))
        if tables_only:
            sweeps = {name: sweeps[name] for name in TABLES}
        table(sweeps, seeds, Path(tmp))
    print(f"whole table: {time.perf_counter() - total:.0f} s")


def table(sweeps: dict[str, Path], seeds: tuple[int, ...], folder: Path) -> None:
    """One line per sweep: each column's test metric over the seeds, the wall time per
    study, and the verdicts of the delivered model against the peer and unregularised."""
    header = f"{'data set':15s} {'metric':13s}" + "".join(f"{c:>24s}" for c in COLUMNS.values())
    print(header + f"{'wall/study':>12s}  delivered against the peer, and unregularised")
    for name, sweep in sweeps.items():
        results, walls = [], []
        for seed in seeds:
            values, key, wall = run_one(sweep, seed, folder)
            results.append(values)
            walls.append(wall)
        got = {c: np.array([r.get(c, np.nan) for r in results]) for c in COLUMNS}
        cells = [
            f"{v.mean():.4f} ± {v.std(ddof=1):.4f}; {np.median(v):.4f}"
            if np.isfinite(v).all()
            else "-"
            for v in got.values()
        ]
        higher = key == "test_accuracy"
        verdicts = [
            _verdict(got["delivered"], got[other], higher)
            for other in (TUNED_ALPHA, "unregularised")
        ]
        print(
            f"{name:15s} {key:13s}"
            + "".join(f"{c:>24s}" for c in cells)
            + f"{np.mean(walls):>10.0f} s  {verdicts[0]}; {verdicts[1]}",
            flush=True,
        )


if __name__ == "__main__":
    main()
