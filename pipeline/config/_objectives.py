"""The metrics a study can optimise, alone or several at once (``[study] objectives``), and the
constraints a sweep file may put on them (``[study] constraints``).

Each metric is measured in the worker, on the network a trial returns, and logged with the
trial under the name given here (``final_val_loss``, ``nonzero_weights``, ...). With several
objectives the first is the one the networks are chosen on (validation loss or accuracy); the
others are what a user is ready to trade for it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

Direction = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class Metric:
    key: str  # the trial's metric (MLflow, reruns, report)
    direction: Direction
    label: str  # as the answer says it
    classification_only: bool = False


# val_loss is, for a classifier, the negative log-likelihood; nonzero_weights counts the weights
# L1's proximal step has not zeroed; inference_time is seconds per 1000 rows, best of 3 passes;
# val_ece is the expected calibration error over 10 bins
OBJECTIVES: dict[str, Metric] = {
    "val_loss": Metric("final_val_loss", "minimize", "validation loss"),
    "val_accuracy": Metric("final_val_accuracy", "maximize", "validation accuracy", True),
    "nonzero_weights": Metric("nonzero_weights", "minimize", "non-zero weights"),
    "weight_norm": Metric("weight_norm", "minimize", "weight norm"),
    "train_time": Metric("train_time", "minimize", "training seconds"),
    "inference_time": Metric("inference_time", "minimize", "seconds per 1000 predictions"),
    "val_ece": Metric("final_val_ece", "minimize", "calibration error", True),
}
CHOOSING = ("val_loss", "val_accuracy")  # what a first objective may be
CONSTRAINT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=)\s*([-+0-9.eE]+)\s*")
# the samplers that steer by the constraints a trial sets (Optuna's Trial.set_constraint)
CONSTRAINED_SAMPLERS = ("tpe", "nsga2", "nsga3", "gp")
# the samplers that search several objectives (CMA-ES takes one)
MULTI_SAMPLERS = ("tpe", "nsga2", "nsga3", "gp", "random", "qmc", "grid")


@dataclass(frozen=True)
class Constraint:
    metric: str  # a name of OBJECTIVES
    op: Literal["<=", ">="]
    bound: float

    def value(self, metrics: dict[str, float]) -> float:
        """Optuna's convention: <= 0 when satisfied."""
        measured = metrics.get(OBJECTIVES[self.metric].key, math.nan)
        return measured - self.bound if self.op == "<=" else self.bound - measured

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def parse_constraint(text: str) -> Constraint:
    """``"nonzero_weights <= 2000"`` as a :class:`Constraint`; ValueError saying what is
    allowed otherwise."""
    match = CONSTRAINT.fullmatch(text)
    if not match:
        raise ValueError(
            f"{text!r} is not 'METRIC <= NUMBER' or 'METRIC >= NUMBER' "
            f"(METRIC one of {', '.join(OBJECTIVES)})"
        )
    metric, op, bound = match.groups()
    if metric not in OBJECTIVES:
        raise ValueError(f"{text!r}: unknown metric {metric!r}; allowed: {', '.join(OBJECTIVES)}")
    try:
        value = float(bound)
    except ValueError:
        raise ValueError(f"{text!r}: {bound!r} is not a number") from None
    return Constraint(metric, op, value)  # type: ignore[arg-type]


def objective_problems(
    objectives: Sequence[str], directions: Sequence[str] | None, task: str
) -> list[str]:
    """What is wrong with ``[study] objectives`` (and ``directions``) for a task."""
    problems = []
    listed = f"[{', '.join(repr(o) for o in objectives)}]"
    for name in objectives:
        if name not in OBJECTIVES:
            problems.append(
                f"study.objectives = {listed}: unknown metric {name!r}; allowed: "
                f"{', '.join(OBJECTIVES)}"
            )
        elif OBJECTIVES[name].classification_only and task != "classification":
            problems.append(
                f"study.objectives = {listed}: {name!r} needs a classification data set; this "
                f"one is {task} (allowed: {', '.join(available(task))})"
            )
    if len(set(objectives)) != len(objectives):
        problems.append(f"study.objectives = {listed}: a metric is listed twice")
    if objectives and objectives[0] not in CHOOSING:
        problems.append(
            f"study.objectives = {listed}: the first objective is what the networks are chosen "
            f"on; allowed first: {', '.join(c for c in CHOOSING if c in available(task))}"
        )
    if directions is not None and len(directions) != len(objectives):
        problems.append(
            f"study.directions = {list(directions)}: one direction per objective "
            f"({len(objectives)})"
        )
    return problems


def available(task: str) -> list[str]:
    """The metrics a study of this task can optimise."""
    return [
        k for k, m in OBJECTIVES.items() if task == "classification" or not m.classification_only
    ]


def on_front(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[bool]:
    """Which rows of ``values`` (one column per objective) are Pareto-optimal: no other row
    is at least as good on every objective and better on one. Rows with a NaN are not."""
    signs = [1.0 if d == "minimize" else -1.0 for d in directions]
    rows = [[s * v for s, v in zip(signs, row, strict=True)] for row in values]
    finite = [all(math.isfinite(v) for v in row) for row in rows]

    def dominated(i: int) -> bool:
        mine = rows[i]
        return any(
            finite[j]
            and all(a <= b for a, b in zip(rows[j], mine, strict=True))
            and any(a < b for a, b in zip(rows[j], mine, strict=True))
            for j in range(len(rows))
        )

    return [finite[i] and not dominated(i) for i in range(len(rows))]


def feasible(t: FrozenTrial) -> bool:
    """Whether a trial keeps the study's constraints (every trial of a study without any):
    Optuna's convention, each value <= 0."""
    return all(v <= 0 for v in t.constraints.values())


def front_of(trials: Sequence[FrozenTrial], directions: Sequence[str]) -> list[FrozenTrial]:
    """The Pareto-optimal trials among complete ``trials``, in their order."""
    mask = on_front([t.values for t in trials], directions)
    return [t for t, on in zip(trials, mask, strict=True) if on]


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The complete trials on the study's Pareto front, baselines included (a baseline that no
    configuration beats on every objective belongs there); of the trials that keep the
    constraints when any does. Ordered by the first objective, best first."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    directions = [d.name.lower() for d in study.directions]
    front = front_of([t for t in complete if feasible(t)] or complete, directions)
    sign = -1.0 if directions[0] == "maximize" else 1.0
    return sorted(front, key=lambda t: (sign * t.values[0], t.number))
