"""Several objectives at once: the sweep file's keys and their refusals, the measured metrics
against references computed here, the Pareto front and its hypervolume against brute force
and closed forms, and a small multi-objective sweep in this process: the front tagged in
MLflow, its view, its figure, the choice by the stated rule and its words."""

import io
import itertools
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
from e2e import cli_in_process as _cli
from e2e import sweep_in_process
from mlflow import MlflowClient
from rich.console import Console

from pipeline import analysis
from pipeline.config import (
    ConfigError,
    load_sweep,
    on_front,
    parse_override,
)
from pipeline.core import MLP, load

ROOT = Path(__file__).resolve().parents[1]
SPARSE = ROOT / "sweeps" / "sparse.toml"

GOOD = """
[study]
name = "mo"
objectives = ["val_accuracy", "nonzero_weights"]
n_trials = 4

[data]
name = "moons"

[fixed]
max_epochs = 20

[search]
l1 = { type = "float", low = 1e-4, high = 1.0, log = true }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_a_multi_objective_file_resolves_directions_metric_and_no_pruner(tmp_path):
    cfg = load_sweep(write(tmp_path, GOOD))
    assert (
        cfg.multi and cfg.study.metric == "val_accuracy" and cfg.objective == "final_val_accuracy"
    )
    assert cfg.directions == ["maximize", "minimize"]
    assert cfg.objective_keys == ["final_val_accuracy", "nonzero_weights"]
    assert isinstance(cfg.make_pruner(), optuna.pruners.NopPruner)
    flipped = load_sweep(
        write(tmp_path, GOOD.replace("n_trials", 'directions = ["maximize", "maximize"]\nn_trials'))
    )
    assert flipped.directions == ["maximize", "maximize"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('"nonzero_weights"]', '"sparsity_score"]'),
            "study.objectives = ['val_accuracy', 'sparsity_score']: unknown metric "
            "'sparsity_score'; allowed: val_loss, val_accuracy, nonzero_weights",
        ),
        (
            ('name = "moons"', 'name = "diabetes"'),
            "'val_accuracy' needs a classification data set; this one is regression",
        ),
        (
            ('["val_accuracy", "nonzero_weights"]', '["nonzero_weights", "val_loss"]'),
            "the first objective is what the networks are chosen on; allowed first: val_loss, "
            "val_accuracy",
        ),
        (
            ('"nonzero_weights"]', '"val_accuracy"]'),
            "a metric is listed twice",
        ),
        (
            ("n_trials", 'directions = ["maximize"]\nn_trials'),
            "study.directions = ['maximize']: one direction per objective (2)",
        ),
        (
            ("n_trials", 'metric = "val_loss"\nn_trials'),
            "study.metric = 'val_loss': the first objective ('val_accuracy') is the metric",
        ),
        (
            ("[search]", "[pruner]\nname = 'median'\n[search]"),
            "pruner.name = 'median': Optuna cannot prune a study of several objectives; "
            "allowed: none",
        ),
        (
            ("[search]", "[sampler]\nname = 'cmaes'\n[search]"),
            "sampler.name = 'cmaes': it searches one objective, and study.objectives has 2; "
            "allowed: tpe, nsga2, nsga3, gp, random, qmc, grid",
        ),
        (
            ("n_trials", 'constraints = ["nonzero_weights < 20"]\nn_trials'),
            "'nonzero_weights < 20' is not 'METRIC <= NUMBER' or 'METRIC >= NUMBER'",
        ),
        (
            ("n_trials", 'constraints = ["weights <= 20"]\nn_trials'),
            "unknown metric 'weights'; allowed: val_loss",
        ),
        (
            ("n_trials", 'constraints = ["nonzero_weights <= 20"]\nn_trials'),
            None,  # valid with TPE; refused with a sampler that cannot keep constraints:
        ),
    ],
)
def test_each_bad_objective_names_the_file_key_value_and_what_is_allowed(
    tmp_path, change, expected
):
    old, new = change
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    if expected is None:
        load_sweep(write(tmp_path, text))
        text += "\n[sampler]\nname = 'random'\n"
        expected = "sampler.name = 'random': it cannot keep to study.constraints; allowed: tpe"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value)


def test_the_cli_refuses_a_bad_objective_with_status_2_and_writes_nothing(tmp_path):
    path = write(tmp_path, GOOD.replace('"nonzero_weights"]', '"speed"]'))
    result = _cli(tmp_path, "sweep", str(path))
    assert result.returncode == 2 and "unknown metric 'speed'" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.toml"]


def test_the_pareto_front_matches_brute_force():
    rng = np.random.default_rng(0)
    for directions in (["minimize", "minimize"], ["maximize", "minimize"], ["minimize"] * 3):
        values = rng.integers(0, 6, size=(40, len(directions))).astype(float)  # with ties
        values[3, 0] = math.nan  # a row with NaN is never on the front
        mask = on_front(values.tolist(), directions)
        signs = np.array([1 if d == "minimize" else -1 for d in directions])
        for i, row in enumerate(values * signs):
            dominated = any(
                np.all(other <= row) and np.any(other < row)
                for j, other in enumerate(values * signs)
                if j != i and np.isfinite(other).all()
            )
            assert mask[i] == (np.isfinite(row).all() and not dominated), (i, values[i])
    assert on_front([[1, 5], [2, 2], [3, 3], [5, 1], [2, 2]], ["minimize", "minimize"]) == [
        True,
        True,
        False,
        True,
        True,
    ]


def test_hypervolume_against_closed_forms_and_a_grid():
    assert analysis.hypervolume(np.array([[1.0, 1.0]]), (3.0, 2.0)) == pytest.approx(2.0)
    # two boxes [1,4]x[3,4] and [2,4]x[1,4]: 3 + 6 - 2 (their overlap)
    assert analysis.hypervolume(np.array([[1.0, 3.0], [2.0, 1.0]]), (4.0, 4.0)) == 7.0
    assert analysis.hypervolume(np.array([[5.0, 0.0]]), (4.0, 4.0)) == 0.0  # beyond the reference
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 1, size=(12, 2))
    grid = (np.arange(400) + 0.5) / 400  # the dominated share of the unit square, cell by cell
    gx, gy = np.meshgrid(grid, grid)
    covered = np.zeros_like(gx, dtype=bool)
    for x, y in points:
        covered |= (gx >= x) & (gy >= y)
    assert analysis.hypervolume(points, (1.0, 1.0)) == pytest.approx(covered.mean(), abs=5e-3)


def test_calibration_error_against_worked_examples():
    from pipeline.search._objective import calibration_error

    # always sure (p = 1) and right half the time: off by 0.5
    sure = np.array([[1.0, 0.0]] * 4)
    assert calibration_error(sure, np.array([0, 0, 1, 1])) == pytest.approx(0.5)
    # p = 0.75 in one bin, right 3 times in 4: calibrated
    three_in_four = np.array([[0.75, 0.25]] * 4)
    assert calibration_error(three_in_four, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    # two bins, half the rows each: 0.5 * |1 - 0.95| + 0.5 * |0 - 0.55|
    mixed = np.array([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55], [0.45, 0.55]])
    assert calibration_error(mixed, np.array([0, 0, 0, 0])) == pytest.approx(0.025 + 0.275)


def test_l1_zeroes_weights_and_nonzero_weights_counts_them():
    d = load("irrelevant", n_samples=200)
    plain = MLP(task="classification", hidden=[16], max_epochs=50, seed=0)
    sparse = MLP(task="classification", hidden=[16], max_epochs=50, seed=0, l1=0.5)
    for model in (plain, sparse):
        model.fit(d.X_train, d.y_train, d.X_val, d.y_val)
        assert model.nonzero_weights() == sum(int((W != 0).sum()) for W in model.weights_)
    assert plain.nonzero_weights() == 30 * 16 + 16 * 2
    assert sparse.nonzero_weights() < plain.nonzero_weights() / 2


def _sweep(folder: Path, *overrides: str):
    return sweep_in_process(folder, SPARSE, *overrides)


SMALL = (
    "study.n_jobs=1",
    "study.n_trials=14",
    "study.folds=2",
    "study.repeats=3",
    "study.top_k=3",
    "fixed.max_epochs=40",
    "fixed.hidden=[16, 16]",
    "sampler.n_startup_trials=6",
)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pareto")
    return (folder, *_sweep(folder, *SMALL))


def test_every_trial_has_both_objectives_and_the_front_is_tagged_in_mlflow(swept):
    folder, cfg, uri, summary, _ = swept
    from pipeline.search import load_study

    study = load_study(cfg, str(folder / "optuna.journal"))
    assert study.metric_names == ["final_val_accuracy", "nonzero_weights"]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all(len(t.values) == 2 for t in complete)
    front = {
        t.number
        for t, on in zip(
            complete, on_front([t.values for t in complete], cfg.directions), strict=True
        )
        if on
    }
    df = analysis.runs(cfg.study.name, uri)
    assert set(df.loc[df["pareto"], "trial"]) == front
    assert set(analysis.pareto(df)["trial"]) == front  # pandas from the store alone
    for t in complete:  # the metrics logged are the objectives Optuna was told
        row = df[df["trial"] == t.number].iloc[0]
        assert row["final_val_accuracy"] == pytest.approx(t.values[0])
        assert row["nonzero_weights"] == t.values[1]
    info = analysis.study_info(cfg.study.name, uri)
    assert info["metrics"]["pareto.size"] == len(front)
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(info["run_id"], "plots")}
    assert "plots/pareto_front.png" in artifacts


def test_the_pareto_view_filters_the_front_with_the_objectives_first(swept):
    import json

    _, cfg, uri, _, output = swept
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.study.name)
    state = json.loads(experiment.tags["mlflow.sharedViewState.pareto"])
    assert "tags.`pareto` = 'true'" in state["searchFilter"]
    assert state["selectedColumns"][:2] == [
        "metrics.`final_val_accuracy`",
        "metrics.`nonzero_weights`",
    ]
    assert state["orderByKey"] == "metrics.`final_val_accuracy`" and not state["orderByAsc"]
    assert "viewStateShareKey=pareto" in output
    # the filter finds exactly the tagged runs
    found = client.search_runs([experiment.experiment_id], filter_string=state["searchFilter"])
    assert found and all(r.data.tags["pareto"] == "true" for r in found)


def test_the_choice_is_the_best_second_objective_within_one_se_of_the_best(swept):
    _, cfg, _, summary, output = swept
    rows = summary.selection
    searched = [r for r in rows if not r["baseline"]]
    best = min(rows, key=lambda r: r["rank"])
    near = [
        r
        for r in rows
        if r["diverged"] == best["diverged"] and best["mean"] - r["mean"] <= best["se"]
    ]
    expected = min(near, key=lambda r: (r["nonzero_weights"], r["rank"]))
    (chosen,) = [r for r in rows if r["chosen"]]
    assert chosen["trial"] == expected["trial"] == summary.best.number
    assert len(searched) <= cfg.study.top_k
    said = "\n".join(summary.answer)
    assert (
        "The Pareto front of validation accuracy (maximize) and non-zero weights (minimize)" in said
    )
    assert "Trade-off:" in said and "the Pareto front" in output


def test_the_trade_off_sentence_pairs_the_seeds(swept):
    """The cost said is the mean paired difference of the re-runs, recomputed here."""
    import re

    _, cfg, _, summary, _ = swept
    line = next(x for x in summary.answer if x.startswith("Trade-off:"))
    match = re.search(r"trial (\d+) \(non-zero weights [^)]*\)\) (loses|gains) ([0-9.e-]+)", line)
    if match is None:  # the choice is the only candidate: nothing cheaper was re-run
        assert "is the choice" in line
        return
    other, verb, amount = int(match[1]), match[2], float(match[3])
    chosen = summary.best.number
    mine = {r.seed: r.metrics["final_val_accuracy"] for r in summary.reruns if r.trial == other}
    theirs = {r.seed: r.metrics["final_val_accuracy"] for r in summary.reruns if r.trial == chosen}
    change = np.mean([mine[s] - theirs[s] for s in mine])
    assert amount == pytest.approx(abs(change), rel=1e-2)
    assert verb == ("gains" if change > 0 else "loses")


def test_a_constraint_is_measured_for_every_trial_and_kept_by_the_choice(tmp_path):
    bound = 200
    cfg, uri, summary, _ = _sweep(
        tmp_path, *SMALL, "study.repeats=2", f'study.constraints=["nonzero_weights <= {bound}"]'
    )
    from pipeline.search import load_study

    study = load_study(cfg, str(tmp_path / "optuna.journal"))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    for t in complete:  # the value the sampler reads: <= 0 where kept
        assert t.constraints == {f"nonzero_weights <= {bound}": pytest.approx(t.values[1] - bound)}
    (baseline,) = [t for t in complete if t.user_attrs.get("baseline")]
    assert baseline.values[1] > bound  # unregularised: every weight non-zero, never chosen
    kept = [t for t in complete if t.values[1] <= bound]
    assert kept, "no trial kept the constraint: the test needs one"
    assert summary.best.values[1] <= bound
    by_trial = {row["trial"]: row for row in summary.selection}
    assert by_trial[baseline.number]["feasible"] is False
    assert all(by_trial[t]["feasible"] for t in by_trial if t != baseline.number)


def test_a_study_that_exists_with_other_objectives_is_refused_before_writing(swept):
    folder, cfg, uri, _, _ = swept
    from pipeline.search import run_sweep

    info = analysis.study_info(cfg.study.name, uri)
    journal = (folder / "optuna.journal").read_bytes()

    single = load_sweep(
        SPARSE, [parse_override(o) for o in (*SMALL, 'study.objectives=["val_accuracy"]')]
    )
    with pytest.raises(
        ConfigError,
        match=r"exists in .* with objectives final_val_accuracy \(maximize\), nonzero_weights",
    ):
        run_sweep(
            single,
            storage=str(folder / "optuna.journal"),
            tracking_uri=uri,
            console=Console(file=io.StringIO()),
        )
    assert (folder / "optuna.journal").read_bytes() == journal
    assert analysis.study_info(cfg.study.name, uri)["tags"] == info["tags"]


def test_the_report_has_the_front_as_a_table_and_a_figure(swept, tmp_path):
    _, cfg, uri, _, _ = swept
    page = analysis.write_reports([cfg.study.name], uri, tmp_path)
    folder = tmp_path / cfg.study.name
    html = (folder / "index.html").read_text()
    assert "The Pareto front" in html and (folder / "pareto_front.png").exists()
    import pandas as pd

    table = pd.read_csv(folder / "pareto.csv")
    df = analysis.runs(cfg.study.name, uri)
    assert set(table["trial"]) == set(df.loc[df["pareto"], "trial"])
    assert page is not None


def test_every_multi_objective_sampler_samples_the_space_and_fronts_agree(tmp_path):
    """Each sampler that takes several objectives runs a few trials of the file's space."""
    for name in ("tpe", "nsga2", "nsga3", "random", "qmc"):
        text = GOOD + f"\n[sampler]\nname = '{name}'\n"
        cfg = load_sweep(write(tmp_path, text))
        study = optuna.create_study(sampler=cfg.sampler_for(0), directions=cfg.directions)
        for values in itertools.islice(itertools.cycle([(0.5, 10.0), (0.7, 30.0), (0.6, 40.0)]), 6):
            trial = study.ask()
            from pipeline.search._study import suggest

            assert 1e-4 <= suggest(trial, cfg)["l1"] <= 1.0
            study.tell(trial, list(values))
        # (0.6, 40) is dominated by (0.7, 30): Optuna's front agrees with on_front
        assert sorted(t.values for t in study.best_trials) == [[0.5, 10.0]] * 2 + [[0.7, 30.0]] * 2


def test_check_says_the_objectives_the_rule_the_constraints_and_no_pruner(tmp_path):
    limit = 'study.constraints=["nonzero_weights <= 2000"]'
    done = _cli(tmp_path, "check", str(SPARSE), "--set", limit)
    assert done.returncode == 0 and sorted(p.name for p in tmp_path.iterdir()) == []
    lines = done.stdout.splitlines()
    assert "objectives final_val_accuracy (maximize), nonzero_weights (minimize)" in lines[1]
    assert "of the Pareto front (the best nonzero_weights within one standard error" in lines[1]
    assert "constraint nonzero_weights <= 2000" in lines
    assert "pruner    none (several objectives)" in lines
    bad = _cli(tmp_path, "check", str(SPARSE), "--set", 'study.constraints=["l1 <= 3"]')
    assert bad.returncode == 2 and "unknown metric 'l1'" in bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_printed_front_is_the_whole_front_up_to_its_first_rows(tmp_path):
    from pipeline.search._console import FRONT_ROWS, _front_table

    cfg = load_sweep(write(tmp_path, GOOD))
    study = optuna.create_study(directions=cfg.directions)
    for i in range(FRONT_ROWS + 5):  # each more accurate and larger: all on the front
        study.add_trial(
            optuna.trial.create_trial(
                params={"l1": 0.01},
                distributions={"l1": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)},
                values=[0.5 + i / 100, float(10 * i)],
            )
        )
    study.add_trial(  # dominated: not shown
        optuna.trial.create_trial(
            params={"l1": 0.01},
            distributions={"l1": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)},
            values=[0.5, 500.0],
        )
    )
    table = _front_table(cfg, study, complete=FRONT_ROWS + 6)
    assert table.row_count == FRONT_ROWS
    assert f"{FRONT_ROWS + 5} of {FRONT_ROWS + 6} complete trials" in str(table.title)
    first = next(iter(table.columns[1].cells))
    assert first == "0.69"  # the most accurate first
