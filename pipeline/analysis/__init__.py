"""Analysis: the read side. Sweeps as pandas DataFrames read from the MLflow store alone (any
tracking URI), figures, reports, and the chosen model read back. Importable in a notebook:

    >>> from pipeline import analysis
    >>> df = analysis.runs("sine-regularisation")
    >>> analysis.leaderboard(df).head()

Nothing here imports the training side (:mod:`pipeline.search`): only the network to read a
model back, the store's location and the shared names.
"""

from pipeline.analysis import _plots as plots
from pipeline.analysis._effects import (
    EFFECT_METRICS,
    against_reference,
    best_against_baselines,
    best_so_far,
    importances,
    leaderboard,
    marginal_effects,
    pruning_summary,
    regulariser_effects,
)
from pipeline.analysis._frames import (
    ablation,
    answer,
    columns,
    curves,
    description,
    ensemble_view,
    log_scale_params,
    objective_of,
    objectives_of,
    peers,
    progress,
    repeats,
    reruns,
    runs,
    searched,
    studies,
    study_info,
)
from pipeline.analysis._models import best_model_uri, load_best_model
from pipeline.analysis._pareto import hypervolume, pareto
from pipeline.analysis._plots import STUDY_FIGURES
from pipeline.analysis._report import chapter_table, write_reports

__all__ = [
    "EFFECT_METRICS",
    "STUDY_FIGURES",
    "against_reference",
    "answer",
    "best_against_baselines",
    "best_so_far",
    "chapter_table",
    "curves",
    "description",
    "ensemble_view",
    "ablation",
    "importances",
    "leaderboard",
    "best_model_uri",
    "load_best_model",
    "log_scale_params",
    "marginal_effects",
    "objective_of",
    "objectives_of",
    "pareto",
    "hypervolume",
    "peers",
    "progress",
    "plots",
    "pruning_summary",
    "regulariser_effects",
    "repeats",
    "columns",
    "reruns",
    "runs",
    "searched",
    "studies",
    "study_info",
    "write_reports",
]
