"""Which regularisation, and how much? Hyperparameter sweeps and experiment tracking for
regularised NumPy MLPs.

The public API, stable across internal moves::

    from pipeline import MLP, load_dataset, load_sweep, run_sweep, load_best_model, analysis

    d = load_dataset("moons", seed=0)
    net = MLP(task="classification", keep_prob=0.8, weight_decay=1e-3, optimizer="adam")
    net.fit(d.X_train, d.y_train, d.X_val, d.y_val)

    summary = run_sweep(load_sweep("sweeps/moons.toml"))  # what `make sweep` runs
    model = load_best_model("moons-regularisation")        # the chosen network, from MLflow
    df = analysis.runs("moons-regularisation")             # every trial as a pandas frame

The package, by concept (each subpackage's ``__init__`` names what others may import):
``core`` (the network and the data), ``config`` (sweep files), ``tracking`` (MLflow writes),
``analysis`` (the read side), ``search`` (studies, trials, workers, the end of a sweep) and
``cluster`` (the shared services of several machines). ``python -m pipeline --help`` lists the
commands. Names are loaded on first use, so that the command line starts quickly.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# gRPC's fork handlers, on by default in its core, restart its poller in a forked child; a child
# that then closes its inherited descriptors before exec (subprocess with a preexec_fn, any
# fork of a process that holds a channel to the storage proxy) aborts with "epoll_wait error:
# Bad file descriptor", about one fork in ten. Nothing here forks a process that goes on using
# gRPC, so the handlers are switched off, before anything imports grpc; children inherit it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

if TYPE_CHECKING:
    from pipeline import analysis  # noqa: F401 - a subpackage, named in __all__
    from pipeline.analysis import load_best_model
    from pipeline.config import ConfigError, SweepConfig, load_sweep
    from pipeline.core import MLP, Dataset, DivergenceError, Hyperparams
    from pipeline.core import load as load_dataset
    from pipeline.results import SweepSummary
    from pipeline.search import run_sweep

__version__ = "0.1.0"

# public name -> (module, attribute); None: the module itself
_PUBLIC: dict[str, tuple[str, str | None]] = {
    "MLP": ("pipeline.core", "MLP"),
    "Hyperparams": ("pipeline.core", "Hyperparams"),
    "DivergenceError": ("pipeline.core", "DivergenceError"),
    "Dataset": ("pipeline.core", "Dataset"),
    "load_dataset": ("pipeline.core", "load"),
    "load_sweep": ("pipeline.config", "load_sweep"),
    "SweepConfig": ("pipeline.config", "SweepConfig"),
    "ConfigError": ("pipeline.config", "ConfigError"),
    "run_sweep": ("pipeline.search", "run_sweep"),
    "SweepSummary": ("pipeline.results", "SweepSummary"),
    "load_best_model": ("pipeline.analysis", "load_best_model"),
    "analysis": ("pipeline.analysis", None),
}
__all__ = [
    "ConfigError",
    "Dataset",
    "DivergenceError",
    "Hyperparams",
    "MLP",
    "SweepConfig",
    "SweepSummary",
    "analysis",
    "load_best_model",
    "load_dataset",
    "load_sweep",
    "run_sweep",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = importlib.import_module(module)
    return value if attribute is None else getattr(value, attribute)


def __dir__() -> list[str]:
    return __all__
