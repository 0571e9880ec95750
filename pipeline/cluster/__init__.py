"""Several machines: the head's shared services (a Dask scheduler, Optuna's gRPC storage proxy
over one storage, an MLflow tracking server) started and stopped together, and the worker
command that joins a cluster. The trials themselves run as Dask tasks from
:mod:`pipeline.search` (``_dask``).
"""

from pipeline.cluster._head import (
    HeadError,
    binding_warning,
    is_secure,
    loopback_web,
    run_head,
    run_worker,
    serve_storage,
    web_routes,
    worker_command,
)

__all__ = [
    "HeadError",
    "binding_warning",
    "is_secure",
    "loopback_web",
    "run_head",
    "run_worker",
    "serve_storage",
    "web_routes",
    "worker_command",
]
