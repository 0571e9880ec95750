"""A study's Pareto front as pandas sees it: the trials no other trial beats on every
objective, from the runs table (:func:`pipeline.analysis.runs`) alone."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.config import on_front
from pipeline.names import COMPLETE


def pareto(frame: pd.DataFrame, objectives: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The complete trials of ``frame`` on the Pareto front of ``objectives`` (column ->
    ``minimize`` or ``maximize``; default: the study's own, which :func:`runs` keeps in
    ``frame.attrs``), best first on the first objective."""
    objectives = dict(objectives or frame.attrs.get("objectives") or {})
    if len(objectives) < 2:
        raise ValueError(
            "a Pareto front needs two objectives or more: pass objectives={column: direction}"
        )
    missing = [c for c in objectives if c not in frame.columns]
    if missing:
        raise ValueError(f"no column {missing} in the frame; it has {list(frame.columns)}")
    complete = frame[frame["state"] == COMPLETE] if "state" in frame else frame
    values = complete[list(objectives)].to_numpy(dtype=float)
    front = complete[np.array(on_front(values, list(objectives.values())), dtype=bool)]
    first, direction = next(iter(objectives.items()))
    return front.sort_values(
        [first, "trial"] if "trial" in front else [first],
        ascending=[direction == "minimize"] + ([True] if "trial" in front else []),
    )


def hypervolume(points: np.ndarray, reference: tuple[float, float]) -> float:
    """The area dominated by ``points`` (two objectives, both minimised) and bounded by
    ``reference``: the larger, the better the front. Points beyond the reference count
    nothing."""
    inside = points[(points[:, 0] < reference[0]) & (points[:, 1] < reference[1])]
    area, ceiling = 0.0, reference[1]
    for x, y in inside[np.argsort(inside[:, 0])]:  # left to right, each lowers the ceiling
        if y < ceiling:
            area += (reference[0] - x) * (ceiling - y)
            ceiling = y
    return float(area)
