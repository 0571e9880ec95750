"""The checks of a sweep file that span its sections: each key against the network's own
constraints, the metric against the task, the pruner against folds, the sampler and pruner
options against Optuna itself. Each problem is one line naming the key, the value and what is
allowed."""

from __future__ import annotations

from typing import Any

import optuna

from pipeline.config._objectives import (
    CHOOSING,
    CONSTRAINED_SAMPLERS,
    MULTI_SAMPLERS,
    OBJECTIVES,
    objective_problems,
    parse_constraint,
)
from pipeline.config._space import FloatParam, suggest_space
from pipeline.config._sweep_file import SweepConfig
from pipeline.config._values import ARCHITECTURE_KEYS, MODEL_KEYS, SEARCHABLE_KEYS, model_value
from pipeline.core import PARAMETER_CONSTRAINTS, POSITIVE_INT, data


def _model_check(key: str, value: Any) -> str | None:
    """None when the MLP accepts ``key = value``; else what it says is allowed."""
    constraint = POSITIVE_INT if key in ARCHITECTURE_KEYS else PARAMETER_CONSTRAINTS[key]
    return None if constraint.test(model_value(key, value)) else constraint.allowed


def cross_checks(cfg: SweepConfig) -> list[str]:
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
    if cfg.task == "regression" and cfg.study.metric == "val_accuracy" and not cfg.multi:
        problems.append(
            "study.metric = 'val_accuracy': accuracy needs a classification data "
            f"set; {cfg.data.name!r} is regression (use 'val_loss')"
        )
    problems += _fold_pruning_checks(cfg)
    objective_problems = _objective_checks(cfg)
    problems += objective_problems
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
    if cfg.study.deliver == "ensemble" and not cfg.study.repeats:
        problems.append(
            "study.deliver = 'ensemble': its networks are refitted from the re-runs' seeds; "
            "set study.repeats, or deliver 'refit' or 'trial'"
        )
    if not objective_problems:  # Optuna itself would refuse them, less clearly
        problems += _check_factory_options(cfg)
    return problems


def _objective_checks(cfg: SweepConfig) -> list[str]:
    """What is wrong with the objectives, constraints, sampler and pruner together."""
    study = cfg.study
    problems = objective_problems(cfg.objectives, study.directions, cfg.task)
    first = study.objectives[0] if study.objectives else study.metric
    if first in CHOOSING and study.metric != first:
        problems.append(
            f"study.metric = {study.metric!r}: the first objective "
            f"({first!r}) is the metric; give one of them"
        )
    if study.objectives and study.direction and study.directions:
        problems.append("study.direction: give directions (one per objective) alone")
    for text in study.constraints:
        metric = parse_constraint(text).metric
        if OBJECTIVES[metric].classification_only and cfg.task != "classification":
            problems.append(
                f"study.constraints: {text!r}: {metric!r} needs a classification data set"
            )
    if study.constraints and cfg.sampler.name not in CONSTRAINED_SAMPLERS:
        problems.append(
            f"sampler.name = {cfg.sampler.name!r}: it cannot keep to study.constraints; "
            f"allowed: {', '.join(CONSTRAINED_SAMPLERS)}"
        )
    if cfg.multi and cfg.sampler.name not in MULTI_SAMPLERS:
        problems.append(
            f"sampler.name = {cfg.sampler.name!r}: it searches one objective, and "
            f"study.objectives has {len(cfg.objectives)}; allowed: "
            f"{', '.join(MULTI_SAMPLERS)}"
        )
    if cfg.multi and "pruner" in cfg.model_fields_set and cfg.pruner.name != "none":
        problems.append(
            f"pruner.name = {cfg.pruner.name!r}: Optuna cannot prune a study of several "
            "objectives; allowed: none"
        )
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
    study = optuna.create_study(sampler=sampler, pruner=pruner, directions=cfg.directions)
    for _ in range(2):
        trial = study.ask()
        try:
            suggest_space(trial, cfg.search)
        except Exception as err:  # any error here is the options' fault
            return [f"sampler = {cfg.sampler.name!r} with options {cfg.sampler.options}: {err}"]
        try:
            for step in (1, 2) if not cfg.multi else ():  # reports need one objective
                trial.report(1.0, step=step * cfg.report_every)
                trial.should_prune()
        except Exception as err:
            return [f"pruner = {cfg.pruner.name!r} with options {cfg.pruner.options}: {err}"]
        for constraint in cfg.constraints:
            trial.set_constraint(str(constraint), 0.0)
        study.tell(trial, [1.0] * len(cfg.objectives))
    return problems
