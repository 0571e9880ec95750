"""The benchmarks' own code runs (their figures are for `make bench`, not for tests)."""

import pytest

from benchmarks import common
from benchmarks import speed as bench


def test_the_seed_task_benchmark_prints_every_candidate(capsys):
    if not bench.SEED_REFERENCE.exists():
        import pytest

        pytest.skip(f"{bench.SEED_REFERENCE} is not beside this clone")
    bench.bench_seed_task(repeats=1)
    out = capsys.readouterr().out
    for name in ("chapter", "float64", "float32", "dropconnect 0.9", "batch norm", "mixup 0.2"):
        assert f"   {name}" in out, out
    assert "final test MSE 0.0576" in out and "before the new options: 283 us" in out


def test_the_quality_verdict_compares_medians_and_says_when_within_noise():
    import numpy as np

    from benchmarks.quality import _verdict

    pick, peer = np.array([0.90, 0.88, 0.92]), np.array([0.89, 0.87, 0.91])
    assert _verdict(pick, peer, higher_is_better=True) == "beats"  # +0.01 on every seed
    assert _verdict(peer, pick, higher_is_better=True) == "loses"
    assert _verdict(pick, pick, higher_is_better=True) == "matches"
    noisy = np.array([0.95, 0.85, 0.89])  # median 0.89: 0.01 behind, paired sd 0.06
    assert _verdict(noisy, peer + 0.01, higher_is_better=True) == "loses (within noise)"
    losses = np.array([0.01, 0.02, 0.03])  # lower is better for a loss
    assert _verdict(losses, losses + 0.01, higher_is_better=False) == "beats"


def test_the_storage_load_runs_synthetic_trials_through_a_journal_proxy(tmp_path):
    """The storage benchmark's client and proxy work: trials are counted and land finished,
    each with the 50 reports of a full-length trial."""
    import numpy as np
    import optuna

    from benchmarks.cluster import REPORTS, _proxy, storage_trials
    from pipeline.search import create_study, make_storage

    with _proxy(str(tmp_path / "load.journal")) as url:
        cfg = common.sweep_config(common.DEFAULT_SWEEP, "load")
        common.fill(create_study(cfg, url), cfg, 5, np.random.default_rng(0))
        done, took = storage_trials(url, "load", 0.5, seed=1)
        study = optuna.load_study(study_name="load", storage=make_storage(url))
        trials = study.get_trials(deepcopy=False)
    assert done >= 1 and took >= 0.5 and len(trials) == 5 + done
    added = trials[5:]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in added)
    assert all(len(t.intermediate_values) == REPORTS and t.params for t in added)


def test_the_quality_benchmark_sweeps_new_data_of_many_kinds_with_inits_template(tmp_path):
    from benchmarks.datasets import new_data_sweeps
    from pipeline.config import load_sweep
    from pipeline.core import load

    sweeps = new_data_sweeps(tmp_path)
    assert len(sweeps) >= 8
    tasks = []
    for path in sweeps.values():
        cfg = load_sweep(path)
        options = cfg.data.model_dump(exclude={"name"})
        d = load(cfg.data.name, **{k: v for k, v in options.items() if v is not None})
        tasks.append(d.task)
        assert cfg.study.deliver == "ensemble" and cfg.study.folds == 5  # the template as written
    assert {"classification", "regression"} <= set(tasks)


def test_the_pareto_benchmark_normalises_the_search_trials_and_leaves_out_baselines():
    import numpy as np
    import optuna

    from benchmarks.pareto import normalised_front
    from pipeline.analysis import hypervolume

    study = optuna.create_study(directions=["maximize", "minimize"])
    for values, attrs in (
        ((0.8, 100.0), {}),
        ((0.9, 300.0), {}),
        ((0.7, 1000.0), {"baseline": "x"}),
    ):
        trial = study.ask()
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        study.tell(trial, list(values))
    points = normalised_front(study, total_weights=1000)
    assert np.allclose(points, [[0.2, 0.1], [0.1, 0.3]])
    # the boxes [0.2,1]x[0.1,1] and [0.1,1]x[0.3,1]: 0.72 + 0.63 - 0.56
    assert hypervolume(points, (1.0, 1.0)) == pytest.approx(0.79)
