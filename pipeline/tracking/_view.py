"""The study's ready-made view in the MLflow UI: its trials (not the parent run), sorted by the
objective best first, with the columns that answer the study's question.

MLflow's UI keeps a shared view as an experiment tag ``mlflow.sharedViewState.<key>`` holding
the view's state as JSON (search facets: filter and order; UI state: the selected columns),
and opens it from a URL with ``?viewStateShareKey=<key>``. The sweep writes that tag when it
opens the study, so the link works while the sweep runs and after.

No MLflow import: the tag is set by :mod:`pipeline.tracking`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pipeline.names import BASELINE, PARETO, ROLE, ROLE_TRIAL, STATE

if TYPE_CHECKING:
    from pipeline.config import SweepConfig

VIEW_KEY = "study"  # the view's share key: one view per study (experiment)
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
PARETO_KEY = "pareto"  # a study of several objectives: its Pareto front's view


def column(kind: str, name: str) -> str:
    """A runs-table column as MLflow's UI names it: ``metrics.`final_val_loss```."""
    return f"{kind}.`{name}`"


def columns(cfg: SweepConfig) -> list[str]:
    """The objective (and, for a classifier, the other validation metric), the test metrics
    (known for the best trial and the baselines), each searched hyperparameter (as a metric
    where it is a number, so that it sorts as one), then the trial's state and baseline."""
    from pipeline.core import is_number  # here: `pipeline ui` imports this module, not numpy

    validation = [cfg.objective]
    tests = ["test_loss"]
    if cfg.task == "classification":
        validation = [cfg.objective, *({"final_val_loss", "final_val_accuracy"} - {cfg.objective})]
        tests.append("test_accuracy")
    chosen = [column("metrics", m) for m in validation + tests]
    for name, space in cfg.search.items():
        numeric = space.type != "categorical" or all(map(is_number, space.choices))
        chosen.append(column("metrics" if numeric else "params", name))
    return chosen + [column("tags", STATE), column("tags", BASELINE)]


def saved_view(cfg: SweepConfig) -> tuple[str, str]:
    """(experiment tag, value) of the study's view."""
    state = {
        "searchFilter": f"{column('tags', ROLE)} = '{ROLE_TRIAL}'",
        "orderByKey": column("metrics", cfg.objective),
        "orderByAsc": cfg.direction == "minimize",
        "selectedColumns": columns(cfg),
    }
    return VIEW_TAG, json.dumps(state)


def pareto_view(cfg: SweepConfig) -> tuple[str, str]:
    """(experiment tag, value) of the view of a study's Pareto front: the trials tagged
    ``pareto = true``, by the first objective, with every objective's column."""
    objectives = [column("metrics", key) for key in cfg.objective_keys]
    rest = [c for c in columns(cfg) if c not in objectives]
    state = {
        "searchFilter": (
            f"{column('tags', ROLE)} = '{ROLE_TRIAL}' and {column('tags', PARETO)} = 'true'"
        ),
        "orderByKey": objectives[0],
        "orderByAsc": cfg.direction == "minimize",
        "selectedColumns": objectives + rest,
    }
    return f"mlflow.sharedViewState.{PARETO_KEY}", json.dumps(state)


def where_to_look(uri: str, experiment_id: str) -> list[str]:
    """Lines telling where a study's trials and answer are, for the store at ``uri`` as it is:
    a tracking server's own address; the local store as ``make ui`` and ``make report`` open
    it; any other store with the command that opens that one."""
    from pipeline.config import mask_credentials
    from pipeline.tracking._store import tracking_uri

    shown = mask_credentials(uri)
    if uri.startswith(("http://", "https://")):
        base = uri.rstrip("/")
        return [
            "browse the trials, best first, on the tracking server:",
            f"  {runs_link(mask_credentials(base), experiment_id)}",
            f"answer the question: python -m pipeline report --tracking-uri {shown}",
        ]
    local = "http://127.0.0.1:5000"
    if uri == tracking_uri(None):
        return [
            "browse the trials, best first: `make ui`, then open",
            f"  {runs_link(local, experiment_id)}",
            "answer the question: `make report`",
        ]
    return [
        f"browse the trials, best first: python -m pipeline ui --tracking-uri {shown}, then open",
        f"  {runs_link(local, experiment_id)}",
        f"answer the question: python -m pipeline report --tracking-uri {shown}",
    ]


def ui_base(uri: str) -> str:
    """Where the MLflow UI over the store at ``uri`` answers: a tracking server's own address,
    else the one ``make ui`` / ``python -m pipeline ui`` serves on by default."""
    from pipeline.config import mask_credentials

    if uri.startswith(("http://", "https://")):
        return mask_credentials(uri).rstrip("/")
    return "http://127.0.0.1:5000"


def run_link(uri: str, experiment_id: str, run_id: str) -> str:
    """The UI page of one run of the store at ``uri``."""
    return f"{ui_base(uri)}/#/experiments/{experiment_id}/runs/{run_id}"


def runs_link(base: str, experiment_id: str, key: str = VIEW_KEY) -> str:
    """The UI page of a study's trials in its saved view (``key``: the study's, or its
    Pareto front's), in the UI's model-training mode (not the GenAI overview the UI opens
    experiments on by default)."""
    return (
        f"{base}/#/experiments/{experiment_id}/runs"
        f"?viewStateShareKey={key}&workflowType=machine_learning"
    )
