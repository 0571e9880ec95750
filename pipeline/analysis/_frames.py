"""Sweeps as pandas DataFrames, read from the MLflow store alone (any tracking URI), so that a
study can be analysed on another machine than the one that ran it. Importable in a notebook:

    >>> from pipeline import analysis
    >>> df = analysis.runs("sine-regularisation")
    >>> analysis.leaderboard(df).head()

Nothing here imports the training code.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import ViewType

from pipeline.names import (
    ABLATION,
    BASELINE,
    BEST,
    CHOSEN,
    COMPLETE,
    FAIL_REASON,
    FAILED,
    MC_METRIC,
    PARETO,
    PEER_PREFIX,
    PRUNE_REASON,
    PRUNED,
    REPEATS_SUFFIX,
    RERUN_OF,
    RERUN_SEED,
    ROLE,
    ROLE_RERUN,
    ROLE_TRIAL,
    STATE,
    STUDY_ANSWER,
    STUDY_BUDGET,
    STUDY_DESCRIPTION,
    STUDY_DIRECTION,
    STUDY_DIRECTIONS,
    STUDY_LOG_SCALE,
    STUDY_METRIC,
    STUDY_OBJECTIVES,
    STUDY_SEARCHED,
    TRIAL,
)
from pipeline.tracking import find_parent_run, tracking_uri


def _experiment(client: MlflowClient, study_or_experiment: str) -> Any:
    experiment = client.get_experiment_by_name(study_or_experiment)
    if experiment is None:
        try:
            experiment = client.get_experiment(study_or_experiment)
        except Exception:  # not an id either
            experiment = None
    if experiment is None:
        names = [e.name for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
        raise ValueError(
            f"no study (MLflow experiment) {study_or_experiment!r} in this store; "
            f"studies: {', '.join(sorted(names)) or 'none'}"
        )
    return experiment


def _typed(value: str | None) -> Any:
    """MLflow keeps params as strings: give numbers back as numbers, lists as lists."""
    if value is None or value == "None":
        return None
    if value in ("True", "False"):
        return value == "True"
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        return (
            int(number) if number.is_integer() and "." not in value and "e" not in value else number
        )
    if value.startswith("["):
        try:
            return tuple(json.loads(value))
        except json.JSONDecodeError:
            return value
    return value


def studies(tracking_uri_: str | None = None) -> list[str]:
    """Names of the studies (experiments with a study run) in the store."""
    client = MlflowClient(tracking_uri(tracking_uri_))
    names = []
    for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY):
        if find_parent_run(client, e.experiment_id):
            names.append(e.name)
    return sorted(names)


def progress(tracking_uri_: str | None = None) -> pd.DataFrame:
    """Every study of the store, a row each: ``study``, ``state`` (running, finished,
    interrupted, failed: its parent run's), ``trials`` done of the ``budget``, the ``best``
    value of its ``objective`` so far, and its ``last_change`` (UTC)."""
    rows = []
    for name in studies(tracking_uri_):
        info = study_info(name, tracking_uri_)
        objective, direction = objective_of(info)
        trials = _runs_in_role(name, tracking_uri_, ROLE_TRIAL)
        done = [r for r in trials if r.data.tags.get(STATE) in (COMPLETE, PRUNED, FAILED)]
        values = [
            r.data.metrics[objective]
            for r in trials
            if r.data.tags.get(STATE) == COMPLETE and objective in r.data.metrics
        ]
        pick = max if direction == "maximize" else min
        times = [info["changed"], *(r.info.end_time or r.info.start_time for r in trials)]
        budget = info["tags"].get(STUDY_BUDGET)
        rows.append(
            {
                "study": name,
                "state": PARENT_STATES.get(info["status"], info["status"].lower()),
                "trials": len(done),
                "budget": int(budget) if budget else pd.NA,
                "objective": objective,
                "best": pick(values) if values else math.nan,
                "last_change": pd.to_datetime(max(times), unit="ms", utc=True),
            }
        )
    return pd.DataFrame(rows, columns=PROGRESS_COLUMNS)


PARENT_STATES = {"RUNNING": "running", "FINISHED": "finished", "KILLED": "interrupted"}
PROGRESS_COLUMNS = ["study", "state", "trials", "budget", "objective", "best", "last_change"]


def runs(study_or_experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per trial: ``trial``, ``run_id``, ``state``, ``baseline``, ``duration`` (s),
    the hyperparameters (typed: floats, ints, tuples) and the final metrics. A trial logged
    twice (an interrupted one, retried) keeps its newest run."""
    found = _runs_in_role(study_or_experiment, tracking_uri, ROLE_TRIAL)
    rows = {}
    for r in found:
        row: dict[str, Any] = {
            "trial": int(r.data.tags[TRIAL]),
            "run_id": r.info.run_id,
            "state": r.data.tags.get(STATE, ""),
            "status": r.info.status,
            "baseline": r.data.tags.get(BASELINE),
            "chosen": r.data.tags.get(BEST) == "true",  # the configuration the sweep chose
            "pareto": r.data.tags.get(PARETO) == "true",  # on the front of several objectives
            "reason": r.data.tags.get(FAIL_REASON) or r.data.tags.get(PRUNE_REASON),
            "duration": ((r.info.end_time or r.info.start_time) - r.info.start_time) / 1000,
        }
        row |= {f"param.{k}": _typed(v) for k, v in r.data.params.items()}
        # a number hyperparameter is also a metric, of the same value: one column
        row |= {k: v for k, v in r.data.metrics.items() if k not in r.data.params}
        rows[row["trial"]] = row
    frame = pd.DataFrame(sorted(rows.values(), key=lambda row: row["trial"]))
    if frame.empty:
        return frame
    frame = frame.rename(columns=lambda c: c.removeprefix("param."))
    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, bool)).any():
            continue
        numbers = pd.to_numeric(frame[column], errors="coerce")
        if (
            column not in ("run_id",)
            and numbers.notna().sum() == frame[column].notna().sum()
            and frame[column].notna().any()
        ):
            whole = bool((numbers.dropna() % 1 == 0).all())
            frame[column] = (
                numbers.astype("Int64")
                if whole and column in _INT_COLUMNS
                else numbers.astype(float)
            )
    frame["baseline"] = frame["baseline"].astype("string")
    frame["state"] = frame["state"].astype("category")
    # what analysis.pareto(frame) reads: the study's objectives (columns) and directions
    try:
        frame.attrs["objectives"] = objectives_of(study_info(study_or_experiment, tracking_uri))
    except ValueError:  # no parent run (yet)
        frame.attrs["objectives"] = {}
    return frame


def _runs_in_role(study_or_experiment: str, tracking_uri: str | None, role: str) -> list:
    """The study's runs of one role (trials or re-runs), oldest first."""
    client = _client(tracking_uri)
    experiment = _experiment(client, study_or_experiment)
    return client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{ROLE}` = '{role}'",
        max_results=50000,
        order_by=["attributes.start_time ASC"],
    )


_INT_COLUMNS = {
    "trial",
    "patience",
    "max_epochs",
    "seed",
    "batch_size",
    "width",
    "depth",
    "best_epoch",
    "stopped_epoch",
    "noise_seed",
}


def _client(uri: str | None) -> MlflowClient:
    return MlflowClient(tracking_uri(uri))


def curves(
    study_or_experiment: str,
    tracking_uri: str | None = None,
    metrics: tuple[str, ...] = ("train_loss", "val_loss", "val_accuracy"),
    trials: list[int] | None = None,
) -> pd.DataFrame:
    """Per-epoch metrics as a long DataFrame: ``trial``, ``run_id``, ``epoch``, ``metric``,
    ``value``; only for ``trials`` when given. Long curves are logged at most
    ``[tracking] curve_points`` points each; every run's full history is its history.csv."""
    client = _client(tracking_uri)
    table = runs(study_or_experiment, tracking_uri)
    if table.empty:
        return pd.DataFrame(columns=["trial", "run_id", "epoch", "metric", "value"])
    if trials is not None:
        table = table[table["trial"].isin(trials)]
    rows = []
    for trial, run_id in zip(table["trial"], table["run_id"], strict=True):
        for metric in metrics:
            for m in client.get_metric_history(run_id, metric):
                rows.append((int(trial), run_id, m.step, metric, m.value))
    frame = pd.DataFrame(rows, columns=["trial", "run_id", "epoch", "metric", "value"])
    return frame.sort_values(["trial", "metric", "epoch"], ignore_index=True)


def study_info(study_or_experiment: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """The study's parent run: its tags (with the sweep's metric, direction and searched
    hyperparameters) and summary metrics. Stores written before the sweep moved to the
    ``sweep_resolved.json`` artifact hold it as params: read either."""
    client = _client(tracking_uri)
    experiment = _experiment(client, study_or_experiment)
    run_id = find_parent_run(client, experiment.experiment_id)
    if run_id is None:
        raise ValueError(f"study {experiment.name!r} has no parent run")
    run = client.get_run(run_id)
    return {
        "name": experiment.name,
        "run_id": run_id,
        "params": {k: _typed(v) for k, v in run.data.params.items()},
        "tags": dict(run.data.tags),
        "metrics": dict(run.data.metrics),
        "status": run.info.status,  # RUNNING while the sweep runs
        "changed": run.info.end_time or run.info.start_time,  # ms since the epoch
    }


def columns(info: dict[str, Any], tracking_uri: str | None = None) -> pd.DataFrame:
    """What became of each column of the study's table (``data/columns.json`` on its parent
    run): the column, its kind, ``input`` (``number``, ``category`` or ``dropped``), why it
    was dropped, and its missing values in the rows used. Empty for a generated data set or a
    store written before tables were read as they come."""
    names = ["column", "kind", "input", "why dropped", "missing"]
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            client = _client(tracking_uri)
            path = client.download_artifacts(info["run_id"], "data/columns.json", tmp)
            with open(path) as f:
                plan = json.load(f)
    except Exception:  # no such artifact: a bundled set's study, or an older store
        return pd.DataFrame(columns=names)
    rows = []
    for column, kind in plan["kinds"].items():
        if column in plan["dropped"]:
            used = "dropped"
        else:
            used = "category" if column in plan["categories"] else "number"
        why = plan["dropped"].get(column, "")
        rows.append([column, kind, used, why, int(plan["gaps"].get(column, 0))])
    return pd.DataFrame(rows, columns=names)


def _study_fact(info: dict[str, Any], key: str, default: Any = None) -> Any:
    return info["tags"].get(key, info["params"].get(key, default))


def objective_of(info: dict[str, Any]) -> tuple[str, str]:
    """(column of the objective in :func:`runs`, direction) for a study."""
    metric = _study_fact(info, STUDY_METRIC, "val_loss")
    return f"final_{metric}", _study_fact(info, STUDY_DIRECTION, "minimize")


def objectives_of(info: dict[str, Any]) -> dict[str, str]:
    """Every objective of a study, as its column in :func:`runs`, with its direction: one for
    a study of one objective."""
    names = [n for n in info["tags"].get(STUDY_OBJECTIVES, "").split(",") if n]
    directions = [d for d in info["tags"].get(STUDY_DIRECTIONS, "").split(",") if d]
    if not names or len(names) != len(directions):  # older stores: one objective
        return dict([objective_of(info)])
    return dict(zip(names, directions, strict=True))


def description(info: dict[str, Any]) -> str:
    return _study_fact(info, STUDY_DESCRIPTION, "") or ""


def searched(info: dict[str, Any]) -> list[str]:
    """The searched hyperparameters of a study, in the sweep file's order."""
    if STUDY_SEARCHED in info["tags"]:
        return [name for name in info["tags"][STUDY_SEARCHED].split(",") if name]
    names = []
    for key in info["params"]:
        if key.startswith("search.") and key.count(".") == 2:
            name = key.split(".")[1]
            if name not in names:
                names.append(name)
    return names


def log_scale_params(info: dict[str, Any]) -> tuple[str, ...]:
    """The searched hyperparameters of a study that its sweep file searched on a log scale."""
    if STUDY_LOG_SCALE in info["tags"]:
        return tuple(name for name in info["tags"][STUDY_LOG_SCALE].split(",") if name)
    return tuple(p for p in searched(info) if info["params"].get(f"search.{p}.log", False))


def answer(info: dict[str, Any]) -> list[str]:
    """The sweep's answer in words (one sentence per item); empty for older stores."""
    text = info["tags"].get(STUDY_ANSWER, "")
    return [line for line in text.splitlines() if line.strip()]


def reruns(study_or_experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """The re-runs of the final choice, one row per configuration: ``trial``,
    ``configuration`` (the baseline's name, else empty), ``chosen``, ``seeds``, and per
    metric its mean and standard deviation over the seeds (test metrics only for the
    configurations tested). Empty without re-runs."""
    found = _runs_in_role(study_or_experiment, tracking_uri, ROLE_RERUN)
    found = [r for r in found if ABLATION not in r.data.tags]  # see ablation()
    rows = [
        {
            "trial": int(r.data.tags[RERUN_OF]),
            "seed": int(r.data.tags[RERUN_SEED]),
            "configuration": r.data.tags.get(BASELINE, ""),
            "chosen": r.data.tags.get(CHOSEN) == "true",
            **r.data.metrics,
        }
        for r in found
    ]
    if not rows:
        return pd.DataFrame()
    long = pd.DataFrame(rows)
    metrics = [
        c for c in long.columns if c.startswith(("final_val_", "test_")) or c == "weight_norm"
    ]
    grouped = long.groupby(["trial", "configuration", "chosen"])
    table = grouped[metrics].agg(["mean", "std"])
    table.columns = [f"{m}_{stat}" if stat == "std" else m for m, stat in table.columns]
    table.insert(0, "seeds", grouped["seed"].count())
    return table.reset_index().sort_values(["chosen", "trial"], ascending=[False, True])


def ablation(info: dict[str, Any]) -> pd.DataFrame:
    """The chosen configuration's regularisers switched off one at a time (from the parent
    run): ``regulariser``, the relative change of the objective on validation and of the test
    loss (switched off against on, paired seed by seed: mean and standard error), ``seeds`` and
    the ``verdict``. Empty when the chosen configuration used no searched regulariser."""
    prefix = f"{ABLATION}."
    keys = dict.fromkeys(
        k.removeprefix(prefix).rsplit(".", 1)[0] for k in info["metrics"] if k.startswith(prefix)
    )
    rows = []
    for key in keys:
        m = {
            name: info["metrics"].get(f"{prefix}{key}.{name}", float("nan"))
            for name in ("val_change", "val_change_se", "test_change", "test_change_se", "seeds")
        }
        verdict = info["tags"].get(f"{prefix}{key}.verdict", "")
        rows.append({"regulariser": key, **m, "verdict": verdict})
    return pd.DataFrame(rows)


def peers(info: dict[str, Any]) -> pd.DataFrame:
    """scikit-learn's MLP on the study's splits (a reference, not a trial): one row per peer
    from the parent run's ``peer-*`` metrics: ``configuration``, validation and test
    metrics, ``alpha``."""
    rows: dict[str, dict[str, Any]] = {}
    for key, value in info["metrics"].items():
        if key.startswith(PEER_PREFIX) and "." in key:
            name, metric = key.split(".", 1)
            rows.setdefault(name, {"configuration": name})[metric] = value
    return pd.DataFrame(list(rows.values()))


def repeats(
    study_or_experiment: str,
    tracking_uri: str | None = None,
    info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """The test losses of the best configuration and each baseline trained again on the
    study's repeat seeds (``[study] repeats``), long: ``configuration``, ``repeat`` (the same
    seed for every configuration), ``test_loss``. Empty without repeats. ``info``: the
    study's :func:`study_info`, when the caller has it already."""
    client = _client(tracking_uri)
    info = info or study_info(study_or_experiment, tracking_uri)
    rows = []
    for key in info["metrics"]:
        if key.endswith(REPEATS_SUFFIX):
            name = key.removesuffix(REPEATS_SUFFIX)
            for m in client.get_metric_history(info["run_id"], key):
                rows.append((name, m.step, m.value))
    frame = pd.DataFrame(rows, columns=["configuration", "repeat", "test_loss"])
    return frame.sort_values(["configuration", "repeat"], ignore_index=True)


def ensemble_view(frame: pd.DataFrame, study_or_experiment: str, uri: str | None = None):
    """For the complete trials that drop units or weights and have their figures (the best,
    the baselines, any drawn with ``python -m pipeline figures``): the validation loss of the
    average of T stochastic passes (``final_val_loss_mc``, by T) against the one weight-scaled
    pass (``final_val_loss``), long: ``trial``, ``T``, ``final_val_loss_mc``, ``ratio``."""
    client = _client(uri)
    rows = []
    columns = ["trial", "T", MC_METRIC, "ratio"]
    if MC_METRIC not in frame:
        return pd.DataFrame(columns=columns)
    stochastic = frame[(frame["state"] == COMPLETE) & frame[MC_METRIC].notna()]
    for trial, run_id, scaled in zip(
        stochastic["trial"], stochastic["run_id"], stochastic["final_val_loss"], strict=True
    ):
        for m in client.get_metric_history(run_id, MC_METRIC):
            rows.append((int(trial), m.step, m.value, m.value / scaled))
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["trial", "T"], ignore_index=True)
