"""The search space of a sweep file: ``[search]`` entries (float, int or categorical ranges),
validated, and asked of an Optuna trial."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import optuna
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)


class StrictModel(BaseModel):
    # a field's docstring is its description: the docs' reference is generated from them
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True
    )


class FloatParam(StrictModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )
    type: Literal["float"]
    """A float range: `{ type = "float", low = 0.5, high = 1.0 }`."""
    low: float
    """The lowest value (inclusive)."""
    high: float
    """The highest value (inclusive)."""
    log: bool = False
    """Sample on a log scale (needs low > 0)."""
    step: float | None = None
    """Only multiples of step above low (not with log; required by the grid sampler)."""

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        _check_range(self.low, self.high, self.log)
        if self.step is not None and (self.step <= 0 or self.log):
            raise ValueError("step must be > 0, and cannot be combined with log = true")
        if self.step is not None:
            _check_step(self.low, self.high, self.step)
        return self

    def values_to_check(self) -> list[Any]:
        return [self.low, self.high]


class IntParam(StrictModel):
    type: Literal["int"]
    """An integer range: `{ type = "int", low = 0, high = 300, step = 25 }`."""
    low: int
    """The lowest value (inclusive)."""
    high: int
    """The highest value (inclusive); step must divide high - low."""
    step: int = 1
    """Only multiples of step above low (1 with log)."""
    log: bool = False
    """Sample on a log scale (needs low > 0)."""

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        _check_range(self.low, self.high, self.log)
        if self.step < 1 or (self.log and self.step != 1):
            raise ValueError("step must be >= 1, and 1 with log = true")
        _check_step(self.low, self.high, self.step)
        return self

    def values_to_check(self) -> list[Any]:
        return [self.low, self.high]


class CategoricalParam(StrictModel):
    type: Literal["categorical"]
    """A choice: `{ type = "categorical", choices = ["sgd", "adam"] }`."""
    choices: Annotated[list[str | int | float | bool], Field(min_length=1)]
    """The values to choose from, each one the network accepts."""

    def values_to_check(self) -> list[Any]:
        return list(self.choices)


def _check_step(low: float, high: float, step: float) -> None:
    """Optuna would silently move ``high`` to the last step below it: say so instead."""
    n = (high - low) / step
    if abs(n - round(n)) > 1e-9 * max(1.0, n):
        raise ValueError(
            f"step {step} does not divide the range {low}..{high} into whole steps; "
            f"choose a step that does, or high = {low + step * math.floor(n)}"
        )


def _check_range(low: float, high: float, log: bool) -> None:
    if low >= high:
        raise ValueError(f"low ({low}) must be < high ({high})")
    if log and low <= 0:
        raise ValueError(f"log = true needs low > 0 (got low = {low})")


SearchParam = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


def suggest_space(
    trial: optuna.Trial, search: dict[str, Any], fixed: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Ask ``trial`` for a value of every searched hyperparameter not in ``fixed``."""
    fixed = fixed or {}
    values = {}
    for key, p in search.items():
        if key in fixed:
            values[key] = fixed[key]
        elif p.type == "float":
            values[key] = trial.suggest_float(key, p.low, p.high, log=p.log, step=p.step)
        elif p.type == "int":
            values[key] = trial.suggest_int(key, p.low, p.high, step=p.step, log=p.log)
        else:
            values[key] = trial.suggest_categorical(key, p.choices)
    return values
