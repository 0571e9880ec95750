"""Analysis on frames built here (the shape ``analysis.runs`` returns), checked against values
worked out by hand."""

import numpy as np
import pandas as pd
import pytest

from pipeline import analysis
from pipeline.analysis import _frames


def _frame(n: int = 24, seed: int = 0) -> pd.DataFrame:
    """Trials whose validation loss depends on weight_decay alone (keep_prob is noise)."""
    rng = np.random.default_rng(seed)
    wd = 10 ** rng.uniform(-5, -1, n)
    keep = rng.uniform(0.5, 1.0, n)
    frame = pd.DataFrame(
        {
            "trial": np.arange(n),
            "state": ["complete"] * (n - 3) + ["pruned", "pruned", "failed"],
            "baseline": pd.array([None] * n, dtype="string"),
            "keep_prob": keep,
            "weight_decay": wd,
            "final_val_loss": (np.log10(wd) + 3) ** 2 + 0.01 * rng.normal(size=n),
            "gen_gap": 1.0 - 0.2 * np.log10(wd),
            "weight_norm": 5.0 - np.log10(wd),
            "sparsity": rng.uniform(0, 0.1, n),
            "stopped_epoch": [100.0] * (n - 3) + [20.0, 40.0, 5.0],
            "max_epochs": [100] * n,
        }
    )
    # trial 0 is the unregularised baseline: no decay, so the largest gap and norm
    frame.loc[0, ["baseline", "weight_decay", "keep_prob"]] = ["unregularised", 0.0, 1.0]
    frame.loc[0, ["gen_gap", "weight_norm"]] = [10.0, 20.0]
    frame.loc[0, "test_loss"] = 0.5
    frame["state"] = frame["state"].astype("category")
    return frame


def test_leaderboard_is_complete_trials_best_first():
    frame = _frame()
    board = analysis.leaderboard(frame, n=5)
    assert len(board) == 5 and (board["state"] == "complete").all()
    assert board["final_val_loss"].is_monotonic_increasing
    assert (
        board["final_val_loss"].iloc[0]
        == frame.loc[frame["state"] == "complete", "final_val_loss"].min()
    )
    maximise = analysis.leaderboard(frame, direction="maximize", n=1)
    assert (
        maximise["final_val_loss"].iloc[0]
        == frame.loc[frame["state"] == "complete", "final_val_loss"].max()
    )


def test_best_against_baselines_has_the_best_then_each_baseline():
    table = analysis.best_against_baselines(_frame())
    assert list(table["configuration"]) == ["best", "unregularised"]
    assert table.loc[1, "test_loss"] == 0.5


def test_marginal_effects_count_every_complete_trial_once_per_param():
    frame = _frame()
    effects = analysis.marginal_effects(
        frame, ["keep_prob", "weight_decay"], log_params=("weight_decay",), bins=4
    )
    complete = int((frame["state"] == "complete").sum())
    assert effects.groupby("param")["count"].sum().to_dict() == {
        "keep_prob": complete,
        "weight_decay": complete,
    }
    assert "0 (off)" in set(effects.loc[effects["param"] == "weight_decay", "bin"])


def test_importances_find_the_parameter_that_matters():
    table = analysis.importances(
        _frame(60), ["keep_prob", "weight_decay"], log_params=("weight_decay",)
    )
    assert table["importance"].sum() == pytest.approx(1.0)
    assert table.iloc[0]["param"] == "weight_decay" and table.iloc[0]["importance"] > 0.8
    assert analysis.importances(_frame(6), ["keep_prob"]).empty  # too few trials


def test_regulariser_effects_have_the_sign_of_the_relation():
    table = analysis.regulariser_effects(
        _frame(), ["weight_decay", "lr"], log_params=("weight_decay",)
    )
    assert set(table["param"]) == {"weight_decay"}  # lr is not a regulariser
    by_metric = table.set_index("metric")["spearman"]
    assert by_metric["gen_gap"] == pytest.approx(-1.0) and by_metric[
        "weight_norm"
    ] == pytest.approx(-1.0)


def test_pruning_summary_counts_the_epochs_pruning_saved():
    row = analysis.pruning_summary(_frame()).iloc[0]
    assert (row["complete"], row["pruned"], row["failed"]) == (21, 2, 0 + 1)
    assert row["epochs_saved_by_pruning"] == (100 - 20) + (100 - 40)
    assert row["epochs_run"] == 21 * 100 + 20 + 40 + 5
    frame = _frame()
    frame.loc[frame["state"] == "pruned", "max_epochs"] = [500, 100]  # e.g. a baseline's own
    row = analysis.pruning_summary(frame).iloc[0]
    assert row["epochs_saved_by_pruning"] == (500 - 20) + (100 - 40)


def test_best_so_far_is_a_running_minimum():
    frame = _frame()
    table = analysis.best_so_far(frame)
    values = frame.loc[frame["state"] == "complete", "final_val_loss"].to_numpy()
    np.testing.assert_array_equal(table["best_so_far"], np.minimum.accumulate(values))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.5", 0.5),
        ("3", 3),
        ("1e-05", 1e-05),
        ("True", True),
        ("None", None),
        ("[64, 64]", (64, 64)),
        ("relu", "relu"),
    ],
)
def test_params_stored_as_strings_come_back_typed(text, value):
    assert _frames._typed(text) == value and type(_frames._typed(text)) is type(value)


def test_searched_and_log_scale_params_come_from_the_parent_run_tags():
    info = {
        "params": {},
        "tags": {
            "study.searched": "keep_prob,weight_decay,activation",
            "study.log_scale": "weight_decay",
            "study.metric": "val_accuracy",
            "study.direction": "maximize",
        },
    }
    assert analysis.searched(info) == ["keep_prob", "weight_decay", "activation"]
    assert analysis.log_scale_params(info) == ("weight_decay",)
    assert analysis.objective_of(info) == ("final_val_accuracy", "maximize")


def test_stores_of_earlier_versions_hold_the_sweep_as_flattened_params():
    info = {
        "tags": {},
        "params": {
            "search.keep_prob.low": 0.5,
            "search.keep_prob.log": False,
            "search.weight_decay.low": 1e-5,
            "search.weight_decay.log": True,
            "study.metric": "val_accuracy",
            "study.direction": "maximize",
        },
    }
    assert analysis.searched(info) == ["keep_prob", "weight_decay"]
    assert analysis.log_scale_params(info) == ("weight_decay",)
    assert analysis.objective_of(info) == ("final_val_accuracy", "maximize")


def test_configurations_are_judged_seed_by_seed_against_the_unregularised_network():
    """Paired differences, by hand: best - unregularised = -1.0, -1.1, -1.0 (mean -1.0333,
    standard error 0.0577 / sqrt(3) = 0.0333): beyond 2 standard errors, it helps. A
    configuration that is worse on two seeds and better on one is within noise."""
    repeated = pd.DataFrame(
        {
            "configuration": ["best"] * 3 + ["unregularised"] * 3 + ["mixed"] * 3 + ["worse"] * 3,
            "repeat": [0, 1, 2] * 4,
            "test_loss": [1.0, 1.1, 0.9, 2.0, 2.2, 1.9, 2.5, 1.7, 2.0, 2.5, 2.8, 2.3],
        }
    )
    table = analysis.against_reference(repeated).set_index("configuration")
    best = table.loc["best"]
    assert best["difference_mean"] == pytest.approx(-1.0333333, rel=1e-6)
    assert best["difference_se"] == pytest.approx(0.0333333, rel=1e-5)
    assert best["relative_to_unregularised"] == pytest.approx(1.0 / 2.0333333, rel=1e-6)
    assert best["verdict"] == "helps"
    assert table.loc["mixed", "verdict"] == "no effect within noise"  # +0.5, -0.5, +0.1
    assert table.loc["worse", "verdict"] == "hurts"  # +0.5, +0.6, +0.4
    assert table.loc["unregularised", "verdict"] == ""
    assert analysis.against_reference(repeated[repeated.configuration == "best"]).empty
