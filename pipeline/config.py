"""Sweep files: ``sweeps/*.toml`` read, overridden from the command line, and validated.

Everything is checked before anything runs or is written, and every problem is reported as
``FILE: KEY = VALUE: what is allowed``. The keys of ``[fixed]`` and ``[search]`` are the MLP's
own hyperparameter names (plus ``width`` and ``depth``, which build ``hidden``), and their values
are checked by the MLP's own validation, so the two can never disagree.

In a sweep file ``0`` means "off" where the MLP takes ``None``: ``batch_size = 0`` is full-batch
training, ``max_norm = 0`` no max-norm constraint (``patience = 0`` is already "off").
"""

from __future__ import annotations

import inspect
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import optuna
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline import data
from pipeline.mlp import MLP, PARAMETER_CONSTRAINTS, POSITIVE_INT
from pipeline.samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler

# Hyperparameters a sweep may fix or search: the MLP's, less those the data set decides.
MLP_DEFAULTS = {p.name: p.default for p in inspect.signature(MLP).parameters.values()}
MODEL_KEYS = tuple(p for p in MLP_DEFAULTS if p not in ("task",))
# ``width`` and ``depth`` build ``hidden`` = (width,) * depth; either may be fixed or searched.
ARCHITECTURE_KEYS = ("width", "depth")
SEARCHABLE_KEYS = tuple(k for k in MODEL_KEYS if k not in ("hidden", "seed", "noise_seed"))
SEARCHABLE_KEYS += ARCHITECTURE_KEYS
ZERO_MEANS_NONE = ("batch_size", "max_norm")
METRICS = {"val_loss": "minimize", "val_accuracy": "maximize"}


class ConfigError(ValueError):
    """A sweep file or override is invalid. ``str()`` is the message for the user."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {p}" for p in problems]
        super().__init__("\n".join(lines))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FloatParam(_Strict):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None

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


class IntParam(_Strict):
    type: Literal["int"]
    low: int
    high: int
    step: int = 1
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        _check_range(self.low, self.high, self.log)
        if self.step < 1 or (self.log and self.step != 1):
            raise ValueError("step must be >= 1, and 1 with log = true")
        _check_step(self.low, self.high, self.step)
        return self

    def values_to_check(self) -> list[Any]:
        return [self.low, self.high]


class CategoricalParam(_Strict):
    type: Literal["categorical"]
    choices: Annotated[list[str | int | float | bool], Field(min_length=1)]

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


MAX_JOBS = 4 * (os.cpu_count() or 1)  # worker processes at most: 4 per core


class StudySection(_Strict):
    # also a folder name (models, reports): it must not be "..", hidden, or hold a separator
    name: Annotated[str, Field(min_length=1, max_length=100)]
    description: str = ""
    metric: Literal["val_loss", "val_accuracy"] = "val_loss"
    direction: Literal["minimize", "maximize"] | None = None
    n_trials: Annotated[int, Field(ge=1)]
    timeout: Annotated[float, Field(gt=0)] | None = None
    n_jobs: Annotated[int, Field(ge=1)] = Field(default_factory=lambda: os.cpu_count() or 1)
    seed: Annotated[int, Field(ge=0)] = 0
    storage: str | None = None
    # a Dask scheduler (tcp://HOST:8786) whose workers run the trials; else local processes
    cluster: str | None = None
    # k-fold cross-validation over the training and validation data pooled (stratified for
    # classification): the objective is the mean over folds; the test split is untouched
    folds: Annotated[int, Field(ge=2, le=50)] | None = None
    # after the budget, the top_k configurations and each baseline are trained again with this
    # many seeds (initial weights and noise; the same seeds for all); the choice is made on
    # their validation means by ``select``, and the chosen one and the baselines are tested,
    # each network once: mean and spread over the seeds
    repeats: Annotated[int, Field(ge=1, le=100)] | None = None
    top_k: Annotated[int, Field(ge=1, le=50)] = 3
    select: Literal["mean", "one_se"] = "mean"

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
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    name: str
    seed: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _known(self) -> DataSection:
        data.check_options(self.name, self.options)
        return self

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SamplerSection(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    name: Literal[SAMPLERS] = "tpe"
    seed: Annotated[int, Field(ge=0)] | None = None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PrunerSection(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    name: Literal[PRUNERS] = "median"
    # the validation metric goes to Optuna (and the pruner decides) every this many epochs;
    # None: about 50 times over max_epochs. Every report is a write to the study storage.
    report_every: Annotated[int, Field(ge=1)] | None = None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrackingSection(_Strict):
    enabled: bool = True
    uri: str | None = None
    # per-epoch values logged as MLflow metrics, at most this many per curve (0: every epoch)
    curve_points: Annotated[int, Field(ge=0)] = 100


class SweepConfig(_Strict):
    """A validated sweep. ``source`` names the file it came from, for messages."""

    study: StudySection
    data: DataSection
    fixed: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, SearchParam] = Field(default_factory=dict)
    sampler: SamplerSection = Field(default_factory=SamplerSection)
    pruner: PrunerSection = Field(default_factory=PrunerSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    source: str = "<sweep>"

    @property
    def task(self) -> str:
        return data.task(self.data.name, self.data.options)

    @property
    def direction(self) -> str:
        return self.study.direction or METRICS[self.study.metric]

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
                n = int(math.floor((p.high - p.low) / p.step + 1e-9)) + 1
                space[key] = [float(v) for v in np.round(p.low + p.step * np.arange(n), 12)]
        return space

    def sampler_for(self, worker: int) -> optuna.samplers.BaseSampler:
        """The sweep's sampler for one worker; each gets its own seed (one seed everywhere
        would make every worker suggest the same parameters)."""
        grid = self.grid_space() if self.sampler.name == "grid" else None
        return make_sampler(
            self.sampler.name, self.sampler.options, self.sampler_seed + worker, grid
        )

    def make_pruner(self) -> optuna.pruners.BasePruner:
        if self.study.folds:  # the pruner sees the mean over the folds done so far
            return make_pruner(self.pruner.name, self.pruner.options, self.study.folds, True)
        return make_pruner(self.pruner.name, self.pruner.options, self.max_epochs)

    @property
    def sampler_seed(self) -> int:
        return self.study.seed if self.sampler.seed is None else self.sampler.seed


def _model_check(key: str, value: Any) -> str | None:
    """None when the MLP accepts ``key = value``; else what it says is allowed."""
    constraint = POSITIVE_INT if key in ARCHITECTURE_KEYS else PARAMETER_CONSTRAINTS[key]
    return None if constraint.test(model_value(key, value)) else constraint.allowed


def model_value(key: str, value: Any) -> Any:
    """A sweep file's value as the MLP takes it (0 -> None for batch_size and max_norm)."""
    if key in ZERO_MEANS_NONE and value == 0:
        return None
    if key == "hidden" and isinstance(value, list):
        return tuple(value)
    return value


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


def sweep_value(key: str, value: Any) -> Any:
    """An MLP keyword's value as a sweep file writes it (the inverse of :func:`model_value`)."""
    if value is None and key in (*ZERO_MEANS_NONE, "patience"):
        return 0
    if isinstance(value, tuple):
        return list(value)
    return value


def full_values(cfg: SweepConfig, values: dict[str, Any]) -> dict[str, Any]:
    """Every hyperparameter of the network a trial trains, under the sweep file's names: the
    trial's values over the MLP's defaults. Every trial of a study (baselines included) thus
    has the same keys, and the MLflow runs table the same columns."""
    kwargs = {k: v for k, v in MLP_DEFAULTS.items() if k != "task"} | model_kwargs(values)
    return in_sweep_terms(cfg, {k: sweep_value(k, v) for k, v in kwargs.items()})


def model_kwargs(values: dict[str, Any]) -> dict[str, Any]:
    """Sweep-file hyperparameters as MLP keywords: 0 -> None where the MLP takes None, and
    ``width``/``depth`` (each defaulting to the MLP's own) -> ``hidden``."""
    kwargs = {k: model_value(k, v) for k, v in values.items() if k not in ARCHITECTURE_KEYS}
    if set(ARCHITECTURE_KEYS) & values.keys():
        default = MLP_DEFAULTS["hidden"]
        width, depth = values.get("width", default[0]), values.get("depth", len(default))
        kwargs["hidden"] = (width,) * depth
    return kwargs


def _cross_checks(cfg: SweepConfig) -> list[str]:
    problems = []
    for key, value in cfg.fixed.items():
        if key not in MODEL_KEYS + ARCHITECTURE_KEYS:
            problems.append(
                f"fixed.{key} = {value!r}: unknown hyperparameter; allowed: "
                f"{', '.join(MODEL_KEYS + ARCHITECTURE_KEYS)}"
            )
        elif (why := _model_check(key, value)) is not None:
            problems.append(f"fixed.{key} = {value!r}: must be {why}")
    for key, param in cfg.search.items():
        if key not in SEARCHABLE_KEYS:
            problems.append(
                f"search.{key}: the model has no searchable hyperparameter {key!r}; "
                f"allowed: {', '.join(SEARCHABLE_KEYS)}"
            )
            continue
        if key in cfg.fixed:
            problems.append(f"search.{key}: {key!r} is both fixed and searched; keep one")
        for value in param.values_to_check():
            if (why := _model_check(key, value)) is not None:
                where = (
                    "choices"
                    if param.type == "categorical"
                    else ("low" if value == param.values_to_check()[0] else "high")
                )
                problems.append(f"search.{key}.{where} = {value!r}: {key} must be {why}")
                break
    architecture = set(ARCHITECTURE_KEYS) & (set(cfg.fixed) | set(cfg.search))
    if "hidden" in cfg.fixed and architecture:
        problems.append(f"fixed.hidden: give either hidden or {sorted(architecture)}, not both")
    if cfg.task == "regression" and cfg.study.metric == "val_accuracy":
        problems.append(
            "study.metric = 'val_accuracy': accuracy needs a classification data "
            f"set; {cfg.data.name!r} is regression (use 'val_loss')"
        )
    problems += _fold_pruning_checks(cfg)
    if cfg.sampler.name == "grid":
        for key, param in cfg.search.items():
            if isinstance(param, FloatParam) and param.step is None:
                problems.append(
                    f"search.{key}: the grid sampler needs a step for float ranges, "
                    "or categorical choices"
                )
    problems += [
        f"data.{key} = {value!r}: must be {allowed}"
        for key, value, allowed in data.option_problems(cfg.data.name, cfg.data.options)
    ]
    problems += _check_factory_options(cfg)
    return problems


def _fold_pruning_checks(cfg: SweepConfig) -> list[str]:
    """With folds the pruner's step is the fold count (1..folds), not the epoch: a warm-up or
    a Hyperband resource meant for epochs would silently never prune."""
    folds = cfg.study.folds
    if not folds:
        return []
    limits = {"median": {"n_warmup_steps": folds - 1}}
    limits["hyperband"] = {"min_resource": folds, "max_resource": folds}
    problems = []
    for key, most in limits.get(cfg.pruner.name, {}).items():
        value = cfg.pruner.options.get(key)
        if isinstance(value, int) and value > most:
            problems.append(
                f"pruner.{key} = {value}: with study.folds = {folds} the pruner's step is the "
                f"number of folds done (1..{folds}), not the epoch; allowed: at most {most}"
            )
    return problems


def _check_factory_options(cfg: SweepConfig) -> list[str]:
    """Extra sampler/pruner keys are passed to Optuna, which checks some only when it samples
    or prunes: build both and run two trials of an in-memory study now, not in a worker."""
    problems = []
    try:
        sampler = cfg.sampler_for(0)
    except (TypeError, ValueError) as err:
        problems.append(f"sampler = {cfg.sampler.name!r} with options {cfg.sampler.options}: {err}")
    try:
        pruner = cfg.make_pruner()
    except (TypeError, ValueError) as err:
        problems.append(f"pruner = {cfg.pruner.name!r} with options {cfg.pruner.options}: {err}")
    if problems:
        return problems
    study = optuna.create_study(sampler=sampler, pruner=pruner, direction=cfg.direction)
    for _ in range(2):
        trial = study.ask()
        try:
            suggest_space(trial, cfg.search)
        except Exception as err:  # any error here is the options' fault
            return [f"sampler = {cfg.sampler.name!r} with options {cfg.sampler.options}: {err}"]
        try:
            for step in (1, 2):
                trial.report(1.0, step=step * cfg.report_every)
                trial.should_prune()
        except Exception as err:
            return [f"pruner = {cfg.pruner.name!r} with options {cfg.pruner.options}: {err}"]
        study.tell(trial, 1.0)
    return problems


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


def _format_pydantic(err: ValidationError, prefix: str = "") -> list[str]:
    problems = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"] if not str(p).startswith(("function-", "tagged-union"))]
        # the discriminated union adds the chosen type ('float', ...) to the path; drop it
        loc = [p for p in loc if p not in ("float", "int", "categorical", "FloatParam")]
        key = prefix + ".".join(loc)
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key")
        elif e["type"] == "missing":
            problems.append(f"{key}: missing (required)")
        elif "input" in e and not isinstance(e["input"], dict):
            problems.append(f"{key} = {e['input']!r}: {message}")
        else:
            problems.append(f"{key}: {message}")
    return problems


def parse_override(text: str) -> tuple[list[str], Any]:
    """``KEY=VALUE`` from ``--set``: a dotted key into the sweep file and a TOML value
    (a bare word that is not valid TOML is taken as a string)."""
    if "=" not in text:
        raise ConfigError("--set", [f"{text!r}: expected KEY=VALUE, e.g. fixed.max_epochs=200"])
    key, raw = (part.strip() for part in text.split("=", 1))
    if not all(key.split(".")):
        raise ConfigError(
            "--set", [f"{text!r}: expected KEY=VALUE with a dotted key, e.g. fixed.max_epochs=200"]
        )
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def load_sweep(
    path: str | Path, overrides: list[tuple[list[str], Any]] | None = None
) -> SweepConfig:
    """Read, override and validate a sweep file; raises :class:`ConfigError`."""
    source = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(source, ["no such file"]) from None
    except IsADirectoryError:
        raise ConfigError(source, ["is a folder, not a sweep file"]) from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            source, [f"not UTF-8 text (byte {err.start}): not a sweep file"]
        ) from None
    except OSError as err:
        raise ConfigError(source, [f"cannot be read: {err.strerror}"]) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(source, [f"not valid TOML: {err}"]) from None
    for keys, value in overrides or []:
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(source, [f"--set {'.'.join(keys)}: {k} is not a table"])
        node[keys[-1]] = value
    try:
        cfg = SweepConfig(**raw, source=source)
    except ValidationError as err:
        raise ConfigError(source, _format_pydantic(err)) from None
    except TypeError as err:  # e.g. a top-level key that is not a table
        raise ConfigError(source, [str(err)]) from None
    problems = _cross_checks(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg
