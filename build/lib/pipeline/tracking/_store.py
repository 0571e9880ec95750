"""Where the MLflow store is and how its runs are told apart: shared by tracking (writes) and
analysis (reads), which must not depend on each other's code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # MLflow takes over a second to import: only where a store is read
    from mlflow import MlflowClient

from pipeline.names import ROLE, ROLE_STUDY

DEFAULT_STORE = Path("mlruns")


def tracking_uri(override: str | None = None) -> str:
    """``override``, else ``MLFLOW_TRACKING_URI``, else SQLite in ``./mlruns/mlflow.db``.

    Set explicitly, never left to MLflow's own default: a stray ``./mlruns`` folder in the
    working directory would otherwise change it."""
    if override:
        return override
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(DEFAULT_STORE / 'mlflow.db').resolve()}"


def find_parent_run(client: MlflowClient, experiment_id: str) -> str | None:
    """The study's parent run in its experiment (the first one, should there be several)."""
    from mlflow.entities import ViewType

    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{ROLE}` = '{ROLE_STUDY}'",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=1,
        order_by=["attributes.start_time ASC"],
    )
    return runs[0].info.run_id if runs else None
