"""Sweep files: ``sweeps/*.toml`` read, overridden from the command line and validated, and the
locations they name (study storage, tracking store) checked, before anything is written.

Every problem is reported as ``FILE: KEY = VALUE: what is allowed``. The keys of ``[fixed]`` and
``[search]`` are the network's own hyperparameter names (plus ``width`` and ``depth``, which
build ``hidden``), checked against the network's own constraints (:mod:`pipeline.core`).
"""

from pipeline.config._credentials import (
    ENV,
    Credentials,
    CredentialsError,
    active_credentials,
    grpc_channel,
    read_credentials,
    use_credentials,
    write_credentials,
)
from pipeline.config._journal import open_journal, repair
from pipeline.config._loading import load_sweep, parse_override
from pipeline.config._locations import (
    MIN_FREE_MIB,
    check_locations,
    first_line,
    free_mib,
    grpc_address,
    mask_credentials,
    missing_extra,
    port_problem,
    scheme_of,
    storage_problem,
    tracking_problem,
)
from pipeline.config._objectives import (
    OBJECTIVES,
    Constraint,
    available,
    feasible,
    front_of,
    on_front,
    pareto_trials,
    parse_constraint,
)
from pipeline.config._samplers import PRUNERS, SAMPLERS, make_sampler
from pipeline.config._space import SearchParam, suggest_space
from pipeline.config._sweep_file import (
    METRICS,
    ConfigError,
    SweepConfig,
    full_values,
    in_sweep_terms,
    trial_values,
)
from pipeline.config._template import data_lines, data_stem, study_name, sweep_text
from pipeline.config._values import (
    ARCHITECTURE_KEYS,
    MLP_DEFAULTS,
    MODEL_KEYS,
    SEARCHABLE_KEYS,
    model_kwargs,
    model_value,
    sweep_value,
)

__all__ = [
    "OBJECTIVES",
    "Constraint",
    "available",
    "on_front",
    "feasible",
    "front_of",
    "pareto_trials",
    "parse_constraint",
    "ENV",
    "Credentials",
    "CredentialsError",
    "active_credentials",
    "grpc_channel",
    "read_credentials",
    "use_credentials",
    "write_credentials",
    "MIN_FREE_MIB",
    "free_mib",
    "ARCHITECTURE_KEYS",
    "METRICS",
    "MLP_DEFAULTS",
    "MODEL_KEYS",
    "PRUNERS",
    "SAMPLERS",
    "make_sampler",
    "SEARCHABLE_KEYS",
    "ConfigError",
    "SearchParam",
    "SweepConfig",
    "check_locations",
    "first_line",
    "full_values",
    "grpc_address",
    "in_sweep_terms",
    "load_sweep",
    "data_lines",
    "data_stem",
    "study_name",
    "sweep_text",
    "mask_credentials",
    "missing_extra",
    "open_journal",
    "model_kwargs",
    "model_value",
    "parse_override",
    "port_problem",
    "repair",
    "scheme_of",
    "storage_problem",
    "suggest_space",
    "sweep_value",
    "tracking_problem",
    "trial_values",
]
