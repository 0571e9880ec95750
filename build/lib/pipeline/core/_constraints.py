"""What a hyperparameter or an option may be: a test and its wording for messages.

A small module of its own (scikit-learn's ``_param_validation``), so that the data sets and the
sweep files check values against the same rules as the network without importing it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Constraint:
    """What a value may be: a test, and its wording for messages."""

    allowed: str
    test: Callable[[Any], bool]

    def check(self, name: str, value: Any) -> None:
        """Raise ``ValueError`` naming ``name``, ``value`` and what is allowed, unless allowed."""
        if not self.test(value):
            raise ValueError(f"{name}={value!r} is not allowed: {name} must be {self.allowed}")


def is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _finite(test: Callable[[float], bool]) -> Callable[[Any], bool]:
    return lambda v: is_number(v) and math.isfinite(v) and test(v)


def one_of(choices: Sequence[str]) -> Constraint:
    return Constraint(f"one of {tuple(choices)}", lambda v: v in choices)


def or_none(c: Constraint, wording: str = "None") -> Constraint:
    return Constraint(f"{c.allowed}, or {wording}", lambda v: v is None or c.test(v))


PROBABILITY = Constraint("a number in (0, 1]", lambda v: is_number(v) and 0 < v <= 1)
NON_NEGATIVE = Constraint("a finite number >= 0", _finite(lambda v: v >= 0))
POSITIVE = Constraint("a finite number > 0", _finite(lambda v: v > 0))
UNIT_INTERVAL = Constraint("a number in [0, 1)", lambda v: is_number(v) and 0 <= v < 1)
POSITIVE_INT = Constraint("an integer >= 1", lambda v: _is_int(v) and v >= 1)
SEED = Constraint("an integer >= 0", lambda v: _is_int(v) and v >= 0)
BOOLEAN = Constraint("true or false", lambda v: isinstance(v, bool | np.bool_))
LAYER_SIZES = Constraint(
    "a sequence of integers >= 1, e.g. (64, 64)",
    lambda v: isinstance(v, Sequence) and not isinstance(v, str) and all(map(POSITIVE_INT.test, v)),
)
