"""Sweep files: ``sweeps/*.toml`` read, overridden from the command line, and validated.

Everything is checked before anything runs or is written, and every problem is reported as
``FILE: KEY = VALUE: what is allowed``. The keys of ``[fixed]`` and ``[search]`` are the MLP's
own hyperparameter names (plus ``width`` and ``depth``, which build ``hidden``), and their values
are checked by the MLP's own validation, so the two can never disagree.

In a sweep file ``0`` means "off" where the MLP takes ``None``: ``batch_size = 0`` is full-batch
training, ``max_norm = 0`` no max-norm constraint (``patience = 0`` is already "off").
"""

from __future__ import annotations

import math
import os
import re
from typing import Annotated, Any, Literal

import numpy as np
import optuna
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from pipeline.config._objectives import (
    CHOOSING,
    OBJECTIVES,
    Constraint,
    Direction,
    parse_constraint,
)
from pipeline.config._samplers import PrunerName, SamplerName, make_pruner, make_sampler
from pipeline.config._space import SearchParam, StrictModel
from pipeline.config._values import (
    ARCHITECTURE_KEYS,
    MLP_DEFAULTS,
    model_kwargs,
    sweep_value,
)
from pipeline.core import data

METRICS: dict[str, Direction] = {"val_loss": "minimize", "val_accuracy": "maximize"}


class ConfigError(ValueError):
    """A sweep file or override is invalid. ``str()`` is the message for the user."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {p}" for p in problems]
        super().__init__("\n".join(lines))


MAX_JOBS = 4 * (os.cpu_count() or 1)  # worker processes at most: 4 per core


class StudySection(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    """The study's name, also the MLflow experiment's and a folder's (letters, digits, '_', '.'
    and '-', starting with a letter or digit)."""
    description: str = ""
    """A line of prose shown on the parent run and in the report."""
    metric: Literal["val_loss", "val_accuracy"] = "val_loss"
    """What selects: the validation loss, or accuracy (classification); the objective is
    `final_<metric>`."""
    direction: Direction | None = None
    """`minimize` or `maximize`; default: the metric's own."""
    objectives: Annotated[list[str], Field(min_length=1, max_length=4)] | None = None
    """Several metrics optimised at once (a Pareto front), e.g. `["val_accuracy",
    "nonzero_weights"]`: the first (`val_loss` or `val_accuracy`, it sets `metric`) is what the
    networks are chosen on; the others are what a user trades for it (`nonzero_weights`,
    `weight_norm`, `train_time`, `inference_time`, `val_ece`, or the other validation metric)."""
    directions: list[Direction] | None = None
    """One direction per objective; default: each metric's own."""
    constraints: list[str] = Field(default_factory=list)
    """Limits a configuration must keep to be chosen, e.g. `["nonzero_weights <= 2000"]`
    (`METRIC <= NUMBER` or `METRIC >= NUMBER`, a metric of `objectives`' list); the samplers
    tpe, nsga2, nsga3 and gp steer away from configurations that break them."""
    n_trials: Annotated[int, Field(ge=1)]
    """The study's total of trials, across workers and re-runs of the command."""
    timeout: Annotated[float, Field(gt=0)] | None = None
    """Seconds after which no trial starts."""
    n_jobs: Annotated[int, Field(ge=1)] = Field(default_factory=lambda: os.cpu_count() or 1)
    """Worker processes (default: all cores; at most 4 per core)."""
    seed: Annotated[int, Field(ge=0)] = 0
    """The sampler's seed (each worker adds its index) and the networks' (`[fixed] seed`
    overrides it)."""
    storage: str | None = None
    """The Optuna storage: a journal file (default `mlruns/optuna.journal`), `sqlite:///...`,
    `postgresql://...` or `grpc://HOST:PORT` (a storage proxy)."""
    cluster: str | None = None
    """A Dask scheduler (`tcp://HOST:8786`) whose workers run the trials; default: local
    processes."""
    folds: Annotated[int, Field(ge=2, le=50)] | None = None
    """k-fold cross-validation over the training and validation data pooled (stratified for
    classification): the objective is the mean over the folds; the test split is untouched."""
    repeats: Annotated[int, Field(ge=1, le=100)] | None = None
    """After the budget, the `top_k` configurations and each baseline are trained again with
    this many other seeds (the same for all); the choice is made on their validation means by
    `select`, and the chosen one and the baselines are tested, each network once."""
    top_k: Annotated[int, Field(ge=1, le=50)] = 3
    """How many of the search's best distinct configurations the re-runs train again."""
    select: Literal["mean", "one_se"] = "mean"
    """`mean`: the best validation mean; `one_se`: of those within one standard error of the
    best mean, the one whose networks have the smallest weight norm."""
    deliver: Literal["refit", "ensemble", "trial"] = "refit"
    """The model delivered (logged as the study's MLflow model, its test figure reported
    first): `refit`, the chosen configuration trained again on training + validation for
    the epochs its networks ran; `ensemble`, that refit once per re-run seed (needs
    `repeats`), their outputs averaged; `trial`, the chosen trial's own network (for
    validation data that are a device of the study, not data a user has)."""
    peer: bool = True
    """After the budget, scikit-learn's MLP with `alpha` by GridSearchCV on the same folds and
    preprocessing, tested beside the delivered model (off for tables too big for it to train
    in minutes)."""

    @model_validator(mode="before")
    @classmethod
    def _metric_from_objectives(cls, data: Any) -> Any:
        """With ``objectives``, the first sets ``metric`` (given both, they must agree)."""
        if isinstance(data, dict) and data.get("objectives") and "metric" not in data:
            first = data["objectives"][0]
            if first in CHOOSING:
                data = {**data, "metric": first}
        return data

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, constraints: list[str]) -> list[str]:
        for text in constraints:
            parse_constraint(text)
        return constraints

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError(
                "must start with a letter or digit and hold only letters, digits, '_', '.' "
                "and '-' (it names folders)"
            )
        return name

    @field_validator("n_jobs")
    @classmethod
    def _jobs(cls, n_jobs: int) -> int:
        if n_jobs > MAX_JOBS:
            raise ValueError(
                f"at most {MAX_JOBS} worker processes (4 per core; this machine has "
                f"{os.cpu_count()} cores)"
            )
        return n_jobs


class DataSection(BaseModel):
    # the data set's own options (``n_val``, ``path``, ...) sit beside name and seed
    model_config = ConfigDict(
        extra="allow", strict=True, frozen=True, use_attribute_docstrings=True
    )
    name: str
    """The data set: a bundled one, or `csv`, a table file (with `path` and `target`; `task`,
    `sep`, `encoding`, `categorical` and `drop` as `init` writes them)."""
    seed: Annotated[int, Field(ge=0)] | None = None
    """Fixes the split (and a synthetic set's samples); default: the set's own."""

    @model_validator(mode="after")
    def _known(self) -> DataSection:
        data.check_options(self.name, self.options)
        return self

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SamplerSection(BaseModel):
    model_config = ConfigDict(
        extra="allow", strict=True, frozen=True, use_attribute_docstrings=True
    )
    name: SamplerName = "tpe"
    """Optuna's sampler; any other key of the table goes to its constructor."""
    seed: Annotated[int, Field(ge=0)] | None = None
    """The sampler's seed; default: `study.seed`."""

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PrunerSection(BaseModel):
    model_config = ConfigDict(
        extra="allow", strict=True, frozen=True, use_attribute_docstrings=True
    )
    name: PrunerName = "median"
    """Optuna's pruner; any other key of the table goes to its constructor."""
    report_every: Annotated[int, Field(ge=1)] | None = None
    """Epochs between reports of the validation metric to Optuna (each a write to the
    storage); default: about 50 reports over `max_epochs`."""

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrackingSection(StrictModel):
    enabled: bool = True
    """Log to MLflow (`--no-tracking` turns it off)."""
    uri: str | None = None
    """The MLflow tracking URI; default: `$MLFLOW_TRACKING_URI`, else SQLite under `mlruns/`."""
    curve_points: Annotated[int, Field(ge=0)] = 100
    """Per-epoch values logged as MLflow metrics, at most this many per curve (0: every
    epoch); `history.csv` keeps them all."""
    register_as: str | None = None
    """Register the delivered model in MLflow's model registry under this name (a new version
    each time the sweep ends): letters, digits, '_', '.' and '-', starting with a letter or
    digit, at most 100 characters."""
    system_metrics: bool = False
    """Sample this machine's CPU, memory, disk and network every 2 s while the sweep runs,
    onto the parent run's System metrics tab (MLflow's monitor; the trials share the machine,
    so they are measured together, not one by one)."""

    @field_validator("register_as")
    @classmethod
    def _registered_name(cls, name: str | None) -> str | None:
        if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
            raise ValueError(
                "a model name must start with a letter or digit and hold only letters, "
                "digits, '_', '.' and '-' (at most 100 characters)"
            )
        return name


class SweepConfig(StrictModel):
    """A validated sweep. ``source`` names the file it came from, for messages."""

    study: StudySection
    """The study: its name, budget, workers, storage and how the answer is chosen."""
    data: DataSection
    """The data set and its options."""
    fixed: dict[str, Any] = Field(default_factory=dict)
    """Hyperparameters set for every trial (the network's own names, plus width and depth)."""
    search: dict[str, SearchParam] = Field(default_factory=dict)
    """Hyperparameters searched, each a float, int or categorical range."""
    sampler: SamplerSection = Field(default_factory=SamplerSection)
    """Optuna's sampler."""
    pruner: PrunerSection = Field(default_factory=PrunerSection)
    """Optuna's pruner."""
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    """Logging to MLflow."""
    source: str = "<sweep>"
    """The file the sweep came from, for messages (not a key of the file)."""

    @property
    def task(self) -> str:
        return data.task(self.data.name, self.data.options)

    @property
    def direction(self) -> Direction:
        """The direction of the metric the networks are chosen on (the first objective)."""
        if self.study.directions:
            return self.study.directions[0]
        return self.study.direction or METRICS[self.study.metric]

    @property
    def objectives(self) -> list[str]:
        """The metrics optimised (OBJECTIVES' names): ``[metric]`` for a single objective."""
        return list(self.study.objectives or [self.study.metric])

    @property
    def multi(self) -> bool:
        """Whether the study has several objectives (a Pareto front instead of one best)."""
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[Direction]:
        if self.study.directions:
            return list(self.study.directions)
        return [self.direction, *(OBJECTIVES[o].direction for o in self.objectives[1:])]

    @property
    def objective_keys(self) -> list[str]:
        """The trial metrics of the objectives (``final_val_loss``, ``nonzero_weights``)."""
        return [OBJECTIVES[o].key for o in self.objectives]

    @property
    def constraints(self) -> list[Constraint]:
        return [parse_constraint(text) for text in self.study.constraints]

    @property
    def objective(self) -> str:
        """The objective's name everywhere (console, MLflow, report): the validation metric of
        the network a trial returns."""
        return f"final_{self.study.metric}"

    @property
    def max_epochs(self) -> int:
        """The fixed ``max_epochs``, else the MLP's default."""
        return int(self.fixed.get("max_epochs", MLP_DEFAULTS["max_epochs"]))

    @property
    def report_every(self) -> int:
        if self.pruner.report_every is not None:
            return self.pruner.report_every
        return max(1, self.max_epochs // 50)

    def grid_space(self) -> dict[str, list[Any]]:
        """The search space as the grid sampler takes it: every value of every parameter."""
        space = {}
        for key, p in self.search.items():
            if p.type == "categorical":
                space[key] = list(p.choices)
            elif p.type == "int":
                space[key] = list(range(p.low, p.high + 1, p.step))
            else:
                step = p.step
                if step is None:  # also a problem of the sweep file's checks
                    raise ValueError(f"search.{key}: the grid sampler needs a step")
                n = int(math.floor((p.high - p.low) / step + 1e-9)) + 1
                space[key] = [float(v) for v in np.round(p.low + step * np.arange(n), 12)]
        return space

    def sampler_for(self, worker: int) -> optuna.samplers.BaseSampler:
        """The sweep's sampler for one worker; each gets its own seed (one seed everywhere
        would make every worker suggest the same parameters)."""
        grid = self.grid_space() if self.sampler.name == "grid" else None
        return make_sampler(
            self.sampler.name, self.sampler.options, self.sampler_seed + worker, grid
        )

    def make_pruner(self) -> optuna.pruners.BasePruner:
        if self.multi:  # Optuna prunes single-objective studies only
            return make_pruner("none", {}, self.max_epochs)
        if self.study.folds:  # the pruner sees the mean over the folds done so far
            return make_pruner(self.pruner.name, self.pruner.options, self.study.folds, True)
        return make_pruner(self.pruner.name, self.pruner.options, self.max_epochs)

    @property
    def sampler_seed(self) -> int:
        return self.study.seed if self.sampler.seed is None else self.sampler.seed


def in_sweep_terms(cfg: SweepConfig, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as this sweep names them: where it builds the network from width and depth,
    a (uniform) ``hidden`` becomes width and depth."""
    uses_width_depth = set(ARCHITECTURE_KEYS) & (set(cfg.fixed) | set(cfg.search))
    if not uses_width_depth or "hidden" not in values:
        return dict(values)
    hidden = values["hidden"]
    rest = {k: v for k, v in values.items() if k != "hidden"}
    return rest | {"width": hidden[0], "depth": len(hidden)}


def trial_values(
    cfg: SweepConfig, searched: dict[str, Any], overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A trial's hyperparameters under the sweep file's names: fixed, then searched, then a
    baseline's overrides. The model seed defaults to the study seed, so all trials start from
    the same weights."""
    values = {"seed": cfg.study.seed, **cfg.fixed, **searched, **(overrides or {})}
    if set(ARCHITECTURE_KEYS) & values.keys():
        values.pop("hidden", None)
    return values


def full_values(cfg: SweepConfig, values: dict[str, Any]) -> dict[str, Any]:
    """Every hyperparameter of the network a trial trains, under the sweep file's names: the
    trial's values over the MLP's defaults. Every trial of a study (baselines included) thus
    has the same keys, and the MLflow runs table the same columns."""
    kwargs = {k: v for k, v in MLP_DEFAULTS.items() if k != "task"} | model_kwargs(values)
    return in_sweep_terms(cfg, {k: sweep_value(k, v) for k, v in kwargs.items()})
