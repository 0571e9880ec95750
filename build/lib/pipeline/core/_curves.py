"""The readable part of a loss curve: where it starts (past the first epochs from random
weights) and where it stops (where a trial diverged). Shared by the MLflow curves (tracking)
and the study's plots, so that neither scale is set by a few absurd values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CURVE_LIMIT = 100.0  # a loss above this many times its first value is a trial diverging


def readable_part(values: Sequence[float] | np.ndarray) -> int:
    """How many leading values of a loss curve to show: up to, not including, the first
    non-finite one or one above ``CURVE_LIMIT`` times the curve's first value (up to 1e+182
    here for a diverging trial)."""
    curve = np.asarray(values, dtype=float)
    if not len(curve):
        return 0
    limit = CURVE_LIMIT * max(abs(curve[0]), 1e-12) if np.isfinite(curve[0]) else 0.0
    bad = ~np.isfinite(curve) | (curve > limit)
    return int(np.argmax(bad)) if bad.any() else len(curve)


CURVE_START = 2.0  # logged curves start where the loss is within this factor of its lowest


def curve_start(history: dict[str, list[float]], end: int) -> int:
    """The first epoch (index) of the loss curves logged as MLflow metrics: the first whose
    validation loss (training loss without validation) is at most ``CURVE_START`` times its
    lowest. The first epochs of a network from random weights (15 against a final 0.36 on the
    sine task) would otherwise set the scale of the UI's linear charts and flatten every
    curve; they stay in ``history.csv`` and in the trial's ``curves.png``."""
    key = "val_loss" if history.get("val_loss") else "train_loss"
    values = np.asarray(history.get(key, [])[:end], dtype=float)
    if not len(values) or not np.isfinite(values).all() or values.min() <= 0:
        return 0
    return int(np.argmax(values <= CURVE_START * values.min()))
