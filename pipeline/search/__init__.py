"""The search: from a validated sweep to its answer. The Optuna study (storage, budget,
baselines, recovery), one trial (``_objective``), the worker processes or Dask tasks that run
trials, the runner (``_sweep``), and the end of a sweep: re-runs and the choice
(``_evaluation``), scikit-learn's MLP as a peer (``_peer``), the answer in words (``_answer``),
the figures (``_figures``) and the console.

Data flows one way: ``config -> study/objective -> worker -> results -> tracking``.
"""

from pipeline.search._console import describe
from pipeline.search._dashboard import ReadOnlyStorage, read_only_storage, serve_dashboard
from pipeline.search._dask import scheduler_problem
from pipeline.search._delivery import refit
from pipeline.search._evaluation import measure, repeat_seeds
from pipeline.search._figures import figures_of
from pipeline.search._objective import build_model, mc_curve, run_trial
from pipeline.search._peer import DEFAULT, LABELS, TUNED_ALPHA
from pipeline.search._study import (
    DEFAULT_STORAGE,
    create_study,
    load_study,
    make_storage,
    repair_storage,
    reserve_trial,
    storage_url,
)
from pipeline.search._sweep import DiskFullError, load_data, run_sweep

__all__ = [
    "scheduler_problem",
    "describe",
    "DEFAULT_STORAGE",
    "ReadOnlyStorage",
    "read_only_storage",
    "serve_dashboard",
    "load_data",
    "DiskFullError",
    "DEFAULT",
    "LABELS",
    "TUNED_ALPHA",
    "build_model",
    "create_study",
    "figures_of",
    "load_study",
    "make_storage",
    "repair_storage",
    "mc_curve",
    "measure",
    "refit",
    "repeat_seeds",
    "reserve_trial",
    "run_sweep",
    "run_trial",
    "storage_url",
]
