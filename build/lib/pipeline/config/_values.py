"""Hyperparameters between a sweep file's names and the network's keywords.

A sweep file writes ``0`` where the network takes ``None`` (``batch_size = 0``: full batch,
``max_norm = 0``: no constraint) and may build ``hidden`` from ``width`` and ``depth``; these
functions are the one place that converts between the two, both ways.
"""

from __future__ import annotations

from typing import Any

from pipeline.core import DEFAULTS

# Hyperparameters a sweep may fix or search: the MLP's, less those the data set decides.


MLP_DEFAULTS = DEFAULTS


MODEL_KEYS = tuple(p for p in MLP_DEFAULTS if p not in ("task",))
# ``width`` and ``depth`` build ``hidden`` = (width,) * depth; either may be fixed or searched.


ARCHITECTURE_KEYS = ("width", "depth")


SEARCHABLE_KEYS = tuple(k for k in MODEL_KEYS if k not in ("hidden", "seed", "noise_seed"))
SEARCHABLE_KEYS += ARCHITECTURE_KEYS


ZERO_MEANS_NONE = ("batch_size", "max_norm")


def model_value(key: str, value: Any) -> Any:
    """A sweep file's value as the MLP takes it (0 -> None for batch_size and max_norm)."""
    if key in ZERO_MEANS_NONE and value == 0:
        return None
    if key == "hidden" and isinstance(value, list):
        return tuple(value)
    return value


def sweep_value(key: str, value: Any) -> Any:
    """An MLP keyword's value as a sweep file writes it (the inverse of :func:`model_value`)."""
    if value is None and key in (*ZERO_MEANS_NONE, "patience"):
        return 0
    if isinstance(value, tuple):
        return list(value)
    return value


def model_kwargs(values: dict[str, Any]) -> dict[str, Any]:
    """Sweep-file hyperparameters as MLP keywords: 0 -> None where the MLP takes None, and
    ``width``/``depth`` (each defaulting to the MLP's own) -> ``hidden``."""
    kwargs = {k: model_value(k, v) for k, v in values.items() if k not in ARCHITECTURE_KEYS}
    if set(ARCHITECTURE_KEYS) & values.keys():
        default = MLP_DEFAULTS["hidden"]
        width, depth = values.get("width", default[0]), values.get("depth", len(default))
        kwargs["hidden"] = (width,) * depth
    return kwargs
