"""The core: a fully connected network in NumPy with the classic regularisers, and the data sets
it trains on. It knows nothing of Optuna or MLflow.

Split the way scikit-learn splits its MLP: activations and losses (``_activations``),
optimisers and the weight steps of L1 and max-norm (``_optimizers``), what a value may be
(``_constraints``), the hyperparameters declared once (``_hyperparams``), the arrays and their
passes (``_propagation``), the estimator (``_network``) and the average of several
(``_ensemble``). Data sets and their splits in
``_data`` (also as :mod:`pipeline.core.data`), a user's table read and its columns planned in
``_table``, the preprocessing fitted on a split's training rows in ``_preprocessing``,
cross-validation folds in ``_folds``.
"""

from pipeline.core import _data as data
from pipeline.core._activations import ACTIVATIONS, TASKS
from pipeline.core._constraints import POSITIVE_INT, Constraint, is_number
from pipeline.core._curves import curve_start, readable_part
from pipeline.core._data import Dataset, Table, load
from pipeline.core._ensemble import Ensemble, load_network
from pipeline.core._folds import (
    fold_indices,
    fold_splits,
    mean_of,
    pooled,
    refit_split,
    smallest_class,
    splits_of,
)
from pipeline.core._hyperparams import (
    DEFAULTS,
    HYPERPARAMETERS,
    PARAMETER_CONSTRAINTS,
    REGULARISER_LABELS,
    REGULARISERS_OFF,
    Hyperparams,
    check_param,
)
from pipeline.core._network import MLP, DivergenceError, EpochCallback
from pipeline.core._optimizers import OPTIMIZERS
from pipeline.core._preprocessing import Preprocessing, as_columns, column_transformer
from pipeline.core._table import (
    KINDS,
    ColumnPlan,
    TableError,
    delimiter_of,
    infer_task,
    plan_columns,
    read_table,
)

__all__ = [
    "ACTIVATIONS",
    "DEFAULTS",
    "HYPERPARAMETERS",
    "MLP",
    "OPTIMIZERS",
    "PARAMETER_CONSTRAINTS",
    "POSITIVE_INT",
    "REGULARISERS_OFF",
    "REGULARISER_LABELS",
    "TASKS",
    "Constraint",
    "Dataset",
    "Ensemble",
    "Preprocessing",
    "Table",
    "TableError",
    "ColumnPlan",
    "KINDS",
    "as_columns",
    "column_transformer",
    "delimiter_of",
    "infer_task",
    "plan_columns",
    "read_table",
    "refit_split",
    "DivergenceError",
    "EpochCallback",
    "Hyperparams",
    "check_param",
    "curve_start",
    "data",
    "fold_indices",
    "fold_splits",
    "is_number",
    "load",
    "load_network",
    "mean_of",
    "pooled",
    "readable_part",
    "smallest_class",
    "splits_of",
]
