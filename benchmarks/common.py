"""What the benchmarks share: sweep configurations, a sweep run in this process, the same
trials for every candidate, and the per-trial machinery measured step by step."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import SweepConfig
    from pipeline.results import SweepSummary


ROOT = Path(__file__).resolve().parents[1]


SWEEPS = ROOT / "sweeps"


DEFAULT_SWEEP = SWEEPS / "default.toml"


def best_times(candidates: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time of each candidate over ``repeats`` interleaved rounds."""
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(repeats):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def sweep_config(path: Path, name: str, **sections: dict) -> SweepConfig:
    """A shipped sweep renamed, its tables updated (``search`` replaced when given)."""
    import tomllib

    from pipeline.config import SweepConfig

    raw = tomllib.loads(path.read_text())
    raw["study"]["name"] = name
    for table, values in sections.items():
        replace = table in ("sampler", "pruner", "search")
        raw[table] = values if replace else {**raw.get(table, {}), **values}
    return SweepConfig(**raw, source=str(path))


def run_sweep(
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

    from pipeline.search import create_study, run_sweep

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


def same_trials(cfg: SweepConfig, n: int, seed: int = 0) -> list[dict]:
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
    base = sweep_config(DEFAULT_SWEEP, "bench", fixed=fixed, pruner={"name": "none"})
    search = {k: v.model_dump() for k, v in base.search.items() if k != "patience"}
    queued = same_trials(sweep_config(DEFAULT_SWEEP, "bench", search=search), n_trials)

    def config(name: str, **sections: dict) -> SweepConfig:
        tables = {"fixed": fixed, "search": search, "pruner": {"name": "none"}}
        return sweep_config(DEFAULT_SWEEP, name, **tables, **sections)

    return config, queued


def goal(ok: bool) -> str:
    return "meets the goal" if ok else "MISSES the goal"


STEPS = ("reserve+ask", "suggest (TPE)", "tell", "MLflow log")


def fill(study: Any, cfg: SweepConfig, n: int, rng: Any) -> None:
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
    from pipeline.search import load_study, reserve_trial
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
