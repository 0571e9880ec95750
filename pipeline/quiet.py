"""The libraries' chatter turned down, by the commands and the worker processes that print to a
console. Importing the package changes nothing of the process (no logging level, no matplotlib
backend; one environment variable, gRPC's fork support, off: see ``pipeline/__init__``);
:func:`quiet_libraries` does, once called."""

from __future__ import annotations

import logging
import os


def quiet_libraries() -> None:
    """Optuna's per-study lines, MLflow's links and progress bars, and the tracebacks MLflow
    logs for database errors that reach the caller anyway (which says them in one line)."""
    # On a tracking server, MLflow prints two lines with links for every run it ends, after
    # fetching the whole run back: an extra request per trial, and noise.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # gRPC's core logs a refused TLS handshake itself; the command says it in one line
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures to files, in processes with no screen
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)  # "Creating tables"
    import optuna  # its own call: Optuna sets its logger's level when it first configures it

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created ..."
