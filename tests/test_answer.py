"""The answer in words: the paired change against no regularisation (checked against the
numbers by hand), regularisers switched off in every top configuration, and chosen values at
an edge of their range that can be widened."""

import numpy as np
import pytest
from e2e import SMOKE

from pipeline.config import load_sweep, parse_override
from pipeline.search import _answer as answer


def _cfg(*overrides: str):
    return load_sweep(SMOKE, [parse_override(o) for o in overrides])


def test_the_change_against_no_regularisation_is_paired_over_seeds():
    pick = {"test_losses": [0.10, 0.12, 0.11, 0.13], "test_loss": 0.115}
    reference = {"test_losses": [0.20, 0.21, 0.19, 0.22], "test_loss": 0.205}
    line = answer._against(_cfg(), pick, reference)
    changes = np.divide(pick["test_losses"], reference["test_losses"]) - 1  # seed by seed
    change, se = changes.mean(), changes.std(ddof=1) / 2  # -0.44 ± 0.025
    assert f"lowers test loss by {abs(change):.0%} ± {se:.0%}" in line
    assert "4 seeds paired)" in line and "within noise" not in line
    noisy = {"test_losses": [0.10, 0.30, 0.12, 0.31], "test_loss": 0.2075}
    assert "within noise" in answer._against(_cfg(), noisy, reference)
    once = answer._against(_cfg(), {"test_loss": 0.1}, {"test_loss": 0.2})
    assert "-50%" in once and "set [study] repeats" in once


def test_a_regulariser_off_in_every_top_configuration_is_said_not_to_help():
    cfg = _cfg()  # keep_prob 0.5..1, weight_decay 1e-5..1e-1 (log), l1 1e-6..1e-2 (log)
    top = [
        {"keep_prob": 0.97, "weight_decay": 1e-3, "l1": 1.5e-6, "patience": 5},
        {"keep_prob": 1.0, "weight_decay": 3e-3, "l1": 1e-6, "patience": 10},
    ]
    lines = answer._regularisers(cfg, top)
    assert "Dropout does not help here (keep_prob >= 0.97 in every top configuration" in lines[0]
    assert lines[1].startswith("Weight decay is in use: weight_decay 0.002")
    assert lines[2].startswith("L1 does not help here (l1 <= 1.5e-06")
    top[0]["keep_prob"] = 0.6  # one top configuration drops units: dropout is in use
    assert answer._regularisers(cfg, top)[0].startswith("Dropout is in use")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"l1": 0.0095}, ["l1 = 0.0095 is at the top of its range 1e-06..0.01: widen it."]),
        ({"weight_decay": 0.09}, ["weight_decay = 0.09 is at the top of its range"]),
        ({"patience": 20}, ["patience = 20 is at the top of its range 0..20: widen it."]),
        ({"keep_prob": 1.0}, []),  # the top of a probability: nothing to widen
        ({"l1": 1e-6}, []),  # the "off" end of a regulariser: said as not helping instead
        ({"l1": 0.0}, []),  # a baseline's value outside the range
        ({"weight_decay": 1e-3}, []),
    ],
)
def test_a_chosen_value_at_a_widenable_edge_of_its_range_is_flagged(values, expected):
    lines = answer._edges(_cfg(), values)
    assert len(lines) == len(expected)
    for line, text in zip(lines, expected, strict=True):
        assert line.startswith(text)


def test_a_regulariser_keeps_its_own_capitals():
    cfg = _cfg("search.connect_keep_prob={type='float',low=0.5,high=1.0}")
    (line,) = [x for x in answer._regularisers(cfg, [{"connect_keep_prob": 0.7}]) if "Drop" in x]
    assert line.startswith("DropConnect is in use: connect_keep_prob 0.7")
