"""Cross-validation as the objective and the robust final choice, on in-memory studies with
tracking off: folds partition the pooled data, the objective is the mean over folds measured
anew by hand, pruning sees each fold, and the choice follows its rule on re-run means."""

import math

import numpy as np
import optuna
import pytest
from e2e import SMOKE

from pipeline.config import load_sweep, parse_override, trial_values
from pipeline.core import fold_indices, fold_splits, load, pooled
from pipeline.names import COMPLETE, PRUNED
from pipeline.search import build_model, run_trial
from pipeline.search._evaluation import Rerun, _selection, candidates, rerun_and_choose


@pytest.fixture(scope="module")
def moons():
    return load("moons", seed=0, n_samples=120, noise=0.3)


def _cfg(*overrides: str):
    base = ("data.name=moons", "data.n_samples=120", "data.noise=0.3", "fixed.max_epochs=20")
    base += ("pruner.n_warmup_steps=0",)
    return load_sweep(SMOKE, [parse_override(o) for o in (*base, *overrides)])


def test_folds_partition_the_pooled_data_stratified_and_leave_the_test_split(moons):
    _, y = pooled(moons)
    splits = fold_splits(moons, 4, seed=0)
    indices = fold_indices(moons, 4, seed=0)
    held = np.concatenate([h for _, h in indices])
    # every pooled row is held out exactly once, and trains in every other fold
    assert sorted(held) == list(range(len(y)))
    for s, (fit, out) in zip(splits, indices, strict=True):
        assert sorted(np.concatenate([fit, out])) == list(range(len(y)))
        np.testing.assert_array_equal(s.y_val, y[out])
        assert abs(s.y_val.mean() - y.mean()) < 0.05  # stratified: the class shares hold
        np.testing.assert_array_equal(s.y_test, moons.y_test)  # the study's test rows
        # scaled by the fold's own training rows: mean 0, sd 1 there, not on held rows
        np.testing.assert_allclose(s.X_train.mean(axis=0), 0, atol=1e-9)
        np.testing.assert_allclose(s.X_train.std(axis=0), 1, atol=1e-9)
    again = fold_splits(moons, 4, seed=0)  # the same folds for every trial of a study
    assert all(np.array_equal(a.X_val, b.X_val) for a, b in zip(splits, again, strict=True))


def test_the_cv_objective_is_the_mean_over_folds_measured_anew(moons):
    cfg = _cfg("study.folds=3")
    study = optuna.create_study(sampler=cfg.sampler_for(0), pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    result = run_trial(trial, cfg, moons)
    assert result.state == COMPLETE and len(result.folds) == 3
    values = trial_values(cfg, trial.params)
    by_hand = []
    for s in fold_splits(moons, 3, cfg.study.seed):
        model = build_model(values, moons.task).fit(s.X_train, s.y_train, s.X_val, s.y_val)
        by_hand.append(model.evaluate(s.X_val, s.y_val)["loss"])
    assert [m["final_val_loss"] for m in result.folds] == pytest.approx(by_hand, rel=1e-12)
    assert result.value == pytest.approx(np.mean(by_hand), rel=1e-12)
    # switched off, the objective is the one validation split's, which differs
    again = optuna.create_study(pruner=optuna.pruners.NopPruner())
    again.enqueue_trial(trial.params)
    single = run_trial(again.ask(), _cfg(), moons)
    assert not math.isclose(single.value, result.value, rel_tol=1e-6)
    # the pruner saw the running mean after each fold, at steps 1..3
    assert study.trials[0].intermediate_values == pytest.approx(
        {k + 1: np.mean(by_hand[: k + 1]) for k in range(3)}
    )


def test_a_poor_trial_is_pruned_after_its_first_fold(moons):
    cfg = _cfg("study.folds=3")
    pruner = optuna.pruners.ThresholdPruner(upper=1e-9)  # everything is worse: pruned at once
    study = optuna.create_study(sampler=cfg.sampler_for(0), pruner=pruner)
    result = run_trial(study.ask(), cfg, moons)
    assert result.state == PRUNED and result.reason.startswith("pruned after fold 1 of 3")
    assert len(result.folds) == 1


def _rerun(trial: int, seed: int, value: float, norm: float) -> Rerun:
    return Rerun(trial, seed, {}, {"final_val_loss": value, "weight_norm": norm})


def test_the_choice_is_the_best_mean_or_the_smallest_weights_within_one_se():
    trials = [optuna.trial.create_trial(value=v, params={}, distributions={}) for v in (1, 2, 3)]
    for n, t in enumerate(trials):
        t.number = n
    reruns = [  # trial 0: best mean, big weights; 1: within one SE, small; 2: beyond, smallest
        *(_rerun(0, s, v, 10.0) for s, v in enumerate((0.50, 0.60, 0.40, 0.50))),
        *(_rerun(1, s, v, 2.0) for s, v in enumerate((0.52, 0.58, 0.50, 0.56))),
        *(_rerun(2, s, v, 1.0) for s, v in enumerate((0.70, 0.71, 0.69, 0.70))),
    ]
    se = np.std([0.5, 0.6, 0.4, 0.5], ddof=1) / 2  # 0.041: trial 1's mean 0.54 is within it
    assert 0.54 - 0.50 <= se < 0.70 - 0.50
    by_mean = _selection(_cfg("study.repeats=4"), trials, reruns)
    assert [row["chosen"] for row in by_mean] == [True, False, False]
    assert by_mean[0]["mean"] == pytest.approx(0.5) and by_mean[0]["se"] == pytest.approx(se)
    one_se = _selection(_cfg("study.repeats=4", "study.select=one_se"), trials, reruns)
    assert [row["chosen"] for row in one_se] == [False, True, False]
    # a diverged seed ranks a configuration after every one without
    reruns[0] = _rerun(0, 0, math.nan, math.nan)
    ranked = _selection(_cfg("study.repeats=4"), trials, reruns)
    assert [row["rank"] for row in ranked] == [3, 1, 2] and ranked[1]["chosen"]


def test_reruns_choose_on_validation_and_test_only_what_they_report(moons, tmp_path):
    cfg = _cfg("study.repeats=2", "study.top_k=2", "study.folds=2", "search.keep_prob.low=0.9")
    study = optuna.create_study(sampler=cfg.sampler_for(0), pruner=optuna.pruners.NopPruner())
    from pipeline.search._study import enqueue_baselines

    enqueue_baselines(study, cfg)
    for _ in range(4):
        trial = study.ask()
        study.tell(trial, run_trial(trial, cfg, moons).value)
    pool = candidates(cfg, study)
    assert len(pool) == 3 and pool[-1].user_attrs["baseline"] == "unregularised"
    evaluation = rerun_and_choose(cfg, study, moons, tmp_path)
    assert len(evaluation.reruns) == 3 * 2 and {r.seed for r in evaluation.reruns} == {1, 2}
    chosen = evaluation.chosen.number
    reported = {m["trial"] for m in evaluation.tests.values()}
    for r in evaluation.reruns:  # networks of candidates not reported are never tested
        assert bool(r.test) == (r.trial in reported)
    # the chosen configuration's test accuracy: the mean over its seeds' networks, each
    # measured by hand on every fold
    values = trial_values(
        cfg, study.trials[chosen].params, study.trials[chosen].user_attrs.get("overrides")
    )
    accuracies = []
    for seed in (1, 2):
        per_fold = []
        for s in fold_splits(moons, 2, cfg.study.seed):
            model = build_model(values | {"seed": seed, "noise_seed": None}, moons.task)
            model.fit(s.X_train, s.y_train, s.X_val, s.y_val)
            per_fold.append(model.evaluate(s.X_test, s.y_test)["accuracy"])
        accuracies.append(np.mean(per_fold))
    best = evaluation.tests["best"]
    assert best["test_accuracies"] == pytest.approx(accuracies, rel=1e-12)
    assert best["test_accuracy"] == pytest.approx(np.mean(accuracies), rel=1e-12)
    assert "final_val_loss_std" in best and "final_val_accuracy" in best


def test_a_baseline_is_never_pruned(moons):
    from pipeline.search._study import enqueue_baselines

    for folds in ("study.folds=3", "study.folds=2"):
        cfg = _cfg(folds)
        study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=1e-9))
        enqueue_baselines(study, cfg)
        baseline = run_trial(study.ask(), cfg, moons)  # the unregularised network
        assert baseline.state == COMPLETE and len(baseline.folds) == cfg.study.folds
        assert run_trial(study.ask(), cfg, moons).state == PRUNED  # a trial of the search
    cfg = _cfg()  # pruning by epoch, without folds
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=1e-9))
    enqueue_baselines(study, cfg)
    assert run_trial(study.ask(), cfg, moons).state == COMPLETE
    assert run_trial(study.ask(), cfg, moons).state == PRUNED


def test_the_wilcoxon_pruner_sees_each_fold_s_own_value_and_needs_folds(moons):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="the wilcoxon pruner compares a trial's folds"):
        load_sweep(SMOKE, [parse_override("pruner.name=wilcoxon")])
    cfg = load_sweep(
        SMOKE,
        [
            parse_override(o)
            for o in ("data.name=moons", "data.n_samples=120", "data.noise=0.3", "study.folds=3")
            + ("fixed.max_epochs=20",)
        ]
        + [(["pruner"], {"name": "wilcoxon"})],
    )
    pruner = cfg.make_pruner()
    assert isinstance(pruner, optuna.pruners.WilcoxonPruner)
    study = optuna.create_study(sampler=cfg.sampler_for(0), pruner=pruner)
    trial = study.ask()
    result = run_trial(trial, cfg, moons)
    frozen = study.trials[0]
    reported = [frozen.intermediate_values[step] for step in sorted(frozen.intermediate_values)]
    assert reported == [m["final_val_loss"] for m in result.folds]  # each fold's, not the mean


def test_a_fold_whose_preprocessing_makes_other_inputs_is_tested_through_its_own(tmp_path):
    """Categories near the pooling threshold: some folds' training rows see them often enough
    for inputs of their own, others pool them, so a fold's network takes another number of
    inputs than the study split's. Re-runs and a trial's own network are measured on the test
    rows through the preprocessing of the split they trained on."""
    from tables import mixed_table

    from pipeline.core._preprocessing import MIN_FREQUENCY
    from pipeline.search._evaluation import _own_network, measure

    frame = mixed_table(150, seed=2)
    rare = MIN_FREQUENCY + 1  # two categories of 6 rows: pooled in some folds, not in others
    frame.loc[frame.index[:rare], "island"] = "RareA"
    frame.loc[frame.index[rare : 2 * rare], "island"] = "RareB"
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    overrides = ("data.name=csv", f"data.path='{path}'", "data.target=species", "study.folds=3")
    overrides += ("pruner.n_warmup_steps=0",)
    cfg = load_sweep(SMOKE, [parse_override(o) for o in (*overrides, "fixed.max_epochs=5")])
    d = load("csv", path=str(path), target="species")
    splits = fold_splits(d, 3, cfg.study.seed)
    widths = {s.X_train.shape[1] for s in splits} | {d.X_train.shape[1]}
    assert len(widths) > 1  # the case this test is about
    values = trial_values(cfg, {"keep_prob": 1.0, "weight_decay": 1e-4, "l1": 1e-5, "patience": 0})
    _, tests, diverged = measure(cfg, values, d)
    by_hand = []
    for s in splits:
        model = build_model(values, d.task).fit(s.X_train, s.y_train, s.X_val, s.y_val)
        by_hand.append(model.evaluate(s.X_test, s.y_test)["loss"])
    assert diverged is None and tests["test_loss"] == pytest.approx(np.mean(by_hand), rel=1e-12)
    study = optuna.create_study()
    study.enqueue_trial({"keep_prob": 1.0, "weight_decay": 1e-4, "l1": 1e-5, "patience": 0})
    trial = study.ask()
    study.tell(trial, 0.0)
    _, own_test = _own_network(cfg, study.trials[0], d, tmp_path / "models")
    assert math.isfinite(own_test["test_loss"])
