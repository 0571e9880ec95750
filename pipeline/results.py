"""What a trial, a worker and a sweep produce: plain records passed from the objective and the
workers to the runner, the console and tracking, none of which need each other's code."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from pipeline.core import MLP
from pipeline.names import COMPLETE


def value_of(trial: FrozenTrial) -> float:
    """A complete trial's objective value (Optuna types every trial's as optional): the key to
    rank complete trials by; in a study of several objectives, the first's (the metric the
    networks are chosen on)."""
    assert trial.values, f"trial {trial.number} has no value: it is not complete"
    return trial.values[0]


@dataclass
class TrialResult:
    hyperparameters: dict[str, Any]  # every hyperparameter of the network, sweep-file names
    state: str = COMPLETE
    value: float | None = None  # the objective (final validation metric), when complete
    values: list[float] = field(default_factory=list)  # every objective's, when complete
    constraints: list[float] = field(default_factory=list)  # <= 0 where kept
    reason: str | None = None  # why it failed or was pruned
    history: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    folds: list[dict[str, float]] = field(default_factory=list)  # each fold's final metrics
    model: MLP | None = None
    model_path: Path | None = None  # where the worker saved the model of a complete trial


@dataclass
class WorkerReport:
    worker: int
    trials: int = 0
    compute_seconds: float = 0.0  # time spent inside MLP.fit
    tracking_seconds: float = 0.0  # time spent logging to MLflow
    busy_seconds: float = 0.0  # from start-up to the end of the loop
    error: str | None = None  # an error of the machinery that stopped this worker
    current_trial: int | None = None  # the trial it was running then, if any


@dataclass
class SweepSummary:
    study_name: str
    n_trials: int
    states: dict[str, int]
    best: FrozenTrial | None  # the chosen configuration's trial
    test_metrics: dict[str, dict[str, Any]]  # "best" and each baseline -> test metrics
    wall_seconds: float  # the whole sweep, set up to summary
    parallel_seconds: float  # the workers' phase
    compute_seconds: float  # training (MLP.fit) inside all trials
    n_jobs: int
    tracking_seconds: float = 0.0  # MLflow logging inside the workers
    setup_seconds: float = math.nan  # from the start of the sweep to the workers' phase
    evaluation_seconds: float = math.nan  # the end's re-runs, test evaluation and peer
    worker_seconds: float = 0.0
    interrupted: bool = False
    parent_run_id: str | None = None
    # where the study's runs and answer are: the UI command and link, the report command
    hints: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # errors that stopped workers
    peers: dict[str, dict[str, float]] = field(default_factory=dict)  # scikit-learn's MLP
    # with [study] repeats: every configuration trained again (evaluation.Rerun), and each
    # candidate's validation mean and spread over the seeds, the chosen one marked
    reruns: list[Any] = field(default_factory=list)
    selection: list[dict[str, Any]] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)  # the answer in words (pipeline.search._answer)
    # the model a user takes away: how it was made, its epochs, its test metrics and the
    # network itself (pipeline.search._delivery)
    delivered: dict[str, Any] = field(default_factory=dict)
    # each regulariser of the chosen configuration switched off (pipeline.search._ablation)
    ablation: list[Any] = field(default_factory=list)
    # where the end of the sweep spent its time: re-runs, choice, refit and test; ablation; peer
    end_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def parallel_overhead(self) -> float:
        """Core-seconds of the workers' phase not spent training (process start-up, sampling,
        storage, logging, idle workers), as a share of the training's own core-seconds."""
        if self.compute_seconds <= 0:
            return math.nan
        return (self.parallel_seconds * self.n_jobs - self.compute_seconds) / self.compute_seconds
