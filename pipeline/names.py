"""Names and values shared across the package: trial states, tags and attributes, the
regularisers with their "off" values, and the seed chapter's configuration.

Plain data (and the one way to write a value in prose), so that analysis and reports use the
same names as the sweep without importing the training code: the regularisers and their "off"
values come from the network's table of hyperparameters (:mod:`pipeline.core`), which needs
nothing but NumPy.
"""

from __future__ import annotations

from pipeline.core import REGULARISERS_OFF

# Trial states, as the MLflow tag ``state`` and the analysis frames' ``state`` column spell them.
COMPLETE = "complete"
PRUNED = "pruned"
FAILED = "failed"
INTERRUPTED = "interrupted"  # cut short by Ctrl-C or a dead process; run again by a retry
RUNNING = "running"
WAITING = "waiting"

# The MLflow status each final state ends its run with.
RUN_STATUS = {COMPLETE: "FINISHED", PRUNED: "KILLED", FAILED: "FAILED", INTERRUPTED: "KILLED"}

# Optuna user attributes of a trial (some also MLflow tags of its run).
BASELINE = "baseline"  # name of the baseline a trial runs, e.g. "unregularised"
OVERRIDES = "overrides"  # hyperparameters a baseline sets that are not (or cannot be) params
INTERRUPTED_ATTR = "interrupted"  # True on a trial cut short; its retry counts in its place
RETRY_OF = "retry_of"  # number of the interrupted trial whose parameters this one re-runs
FAIL_REASON = "fail_reason"
PRUNE_REASON = "prune_reason"
MLFLOW_RUN_ID = "mlflow_run_id"  # the trial's MLflow run, for users of Optuna's own tools
MLFLOW_RUN_URL = "mlflow_run_url"  # its page in the MLflow UI

# MLflow tags.
ROLE = "pipeline.role"  # "study" on parent runs, "trial" on child runs
ROLE_STUDY = "study"
ROLE_TRIAL = "trial"
ROLE_RERUN = "rerun"  # a configuration trained again with another seed, after the budget
RERUN_OF = "rerun.of_trial"  # on a re-run: the trial whose configuration it trains again
RERUN_SEED = "rerun.seed"
CHOSEN = "chosen"  # "true" on the re-runs of the chosen configuration
STATE = "state"
TRIAL = "trial"
STUDY = "study"
PARETO = "pareto"  # "true" on the runs of the trials on a study's Pareto front
BEST = "best"  # "true" on the best trial's run
BEST_RUN_ID = "best_run_id"  # on the parent run: the best trial's run
MODEL_URI = "model_uri"  # on the parent run: the delivered model, models:/<id>
NOTE = "mlflow.note.content"  # a run's description, rendered as markdown by the MLflow UI
# On the parent run: what the analysis needs of the sweep file (the whole resolved sweep is its
# artifact ``sweep_resolved.json``, not params, which would crowd the UI's column picker).
STUDY_METRIC = "study.metric"  # val_loss or val_accuracy; the objective is final_<metric>
STUDY_DIRECTION = "study.direction"
# a study's objectives as its trials' metrics, and their directions, comma-separated
STUDY_OBJECTIVES = "study.objectives"
STUDY_DIRECTIONS = "study.directions"
STUDY_SEARCHED = "study.searched"  # the searched hyperparameters, comma-separated
STUDY_LOG_SCALE = "study.log_scale"  # those searched on a log scale, comma-separated
STUDY_DESCRIPTION = "study.description"
STUDY_BUDGET = "study.n_trials"  # the study's budget of trials
STUDY_ANSWER = (
    "study.answer"  # the answer in words, one sentence per line (pipeline.search._answer)
)
PEER_PREFIX = "peer-"  # parent-run metrics of scikit-learn's MLP on the same splits
FOLD_PREFIX = "fold."  # a trial's per-fold metric, e.g. fold.final_val_loss (step: the fold)
# The ensemble view of a network that drops units or weights: the validation loss of the average
# of T stochastic passes, logged with the trial's figures, T as the metric's step.
MC_METRIC = "final_val_loss_mc"
REPEATS_SUFFIX = ".test_loss_repeats"  # <configuration><this>: its test loss per repeat seed

INTERRUPTED_REASON = "interrupted: the sweep running it stopped before the trial ended"

ABLATION = "ablation"  # a re-run's tag: the regulariser it switched off; parent metrics prefix
NOISE_SE = 2.0  # a paired difference beyond this many standard errors is more than noise


def short(value: object) -> str:
    """A value as prose writes it: floats to 3 significant digits (notes, answers, tables)."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


REGULARISERS = tuple(REGULARISERS_OFF)

# The seed chapter's network and training, in sweep-file form (batch_size 0: full batch;
# seed 42: the chapter's initial weights), with no regulariser but its L2.
CHAPTER: dict[str, object] = {
    **REGULARISERS_OFF,
    "hidden": [64, 64],
    "activation": "relu",
    "optimizer": "sgd",
    "lr": 0.01,
    "max_epochs": 500,
    "weight_decay": 0.001,
    "batch_size": 0,
    "seed": 42,
}
CHAPTER_KEEP_PROB = 0.7  # the chapter's one dropout setting, which made test error worse
