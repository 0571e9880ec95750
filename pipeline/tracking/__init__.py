"""Tracking: MLflow writes only. The store and its location, a study's experiment and parent
run, a child run per trial, the saved view of the study's runs, and the MLflow server that
``ui`` and ``head`` start.

What is written is handed in as plain records (:mod:`pipeline.results`) and text; nothing here
trains, draws or reads models back.
"""

from pipeline.tracking._parent import StudyTracker, source_tags, start_parent_run
from pipeline.tracking._runs import (
    SWEEP_RESOLVED,
    TrialLogger,
    close_interrupted_runs,
    curve_steps,
    log_metrics,
    log_summary,
    now_ms,
    prepare_experiment,
    read_history,
    readable_length,
    trial_runs,
    write_history,
)
from pipeline.tracking._server import command as server_command
from pipeline.tracking._server import serve, server_env
from pipeline.tracking._store import DEFAULT_STORE, find_parent_run, tracking_uri
from pipeline.tracking._view import (
    PARETO_KEY,
    VIEW_TAG,
    run_link,
    runs_link,
    saved_view,
    ui_base,
    where_to_look,
)

__all__ = [
    "DEFAULT_STORE",
    "SWEEP_RESOLVED",
    "VIEW_TAG",
    "PARETO_KEY",
    "StudyTracker",
    "TrialLogger",
    "close_interrupted_runs",
    "curve_steps",
    "find_parent_run",
    "source_tags",
    "log_metrics",
    "log_summary",
    "now_ms",
    "prepare_experiment",
    "read_history",
    "readable_length",
    "run_link",
    "runs_link",
    "saved_view",
    "serve",
    "server_command",
    "server_env",
    "start_parent_run",
    "tracking_uri",
    "ui_base",
    "trial_runs",
    "where_to_look",
    "write_history",
]
