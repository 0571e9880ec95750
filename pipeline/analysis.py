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

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import ViewType

from pipeline.names import (
    BASELINE,
    BEST,
    CHOSEN,
    COMPLETE,
    FAIL_REASON,
    FAILED,
    INTERRUPTED,
    MC_METRIC,
    NOISE_SE,
    PEER_PREFIX,
    PRUNE_REASON,
    PRUNED,
    REGULARISERS,
    REPEATS_SUFFIX,
    RERUN_OF,
    RERUN_SEED,
    ROLE,
    ROLE_RERUN,
    ROLE_TRIAL,
    STATE,
    STUDY_ANSWER,
    STUDY_DESCRIPTION,
    STUDY_DIRECTION,
    STUDY_LOG_SCALE,
    STUDY_METRIC,
    STUDY_SEARCHED,
    TRIAL,
)
from pipeline.store import find_parent_run, tracking_uri

EFFECT_METRICS = ("gen_gap", "weight_norm", "sparsity")


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
    run = client.get_run(run_id)
    return {
        "name": experiment.name,
        "run_id": run_id,
        "params": {k: _typed(v) for k, v in run.data.params.items()},
        "tags": dict(run.data.tags),
        "metrics": dict(run.data.metrics),
    }


def _study_fact(info: dict[str, Any], key: str, default: Any = None) -> Any:
    return info["tags"].get(key, info["params"].get(key, default))


def objective_of(info: dict[str, Any]) -> tuple[str, str]:
    """(column of the objective in :func:`runs`, direction) for a study."""
    metric = _study_fact(info, STUDY_METRIC, "val_loss")
    return f"final_{metric}", _study_fact(info, STUDY_DIRECTION, "minimize")


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


def leaderboard(
    frame: pd.DataFrame, objective: str = "final_val_loss", direction: str = "minimize", n: int = 10
) -> pd.DataFrame:
    """The best complete trials by the objective (validation), best first."""
    if frame.empty:  # a study with no trial yet
        return frame
    complete = frame[frame["state"] == COMPLETE]
    return complete.sort_values(objective, ascending=direction == "minimize").head(n)


def best_against_baselines(
    frame: pd.DataFrame, objective: str = "final_val_loss", direction: str = "minimize"
) -> pd.DataFrame:
    """The best configuration and each baseline, on validation and (evaluated once, at the end
    of the sweep) on test."""
    chosen = frame[frame["chosen"]] if "chosen" in frame else frame.iloc[:0]
    if chosen.empty:  # a store written before the choice was tagged: the best by the search
        chosen = leaderboard(frame, objective, direction, n=1)
    top = chosen.assign(configuration="best")
    baselines = frame[frame["baseline"].notna() & (frame["state"] == COMPLETE)]
    baselines = baselines.assign(configuration=baselines["baseline"])
    columns = [  # both validation metrics of a classifier, so that a disagreement shows
        "configuration",
        "trial",
        objective,
        *(m for m in ("final_val_loss", "final_val_accuracy") if m != objective),
        "final_train_loss",
        "gen_gap",
        "test_loss",
        "test_loss_std",
        "test_accuracy",
        "test_accuracy_std",
        "weight_norm",
        "sparsity",
        "stopped_epoch",
    ]
    table = pd.concat([top, baselines], ignore_index=True)
    return table[[c for c in columns if c in table.columns]]


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


def _bins(values: pd.Series, log: bool, bins: int) -> pd.Series:
    """Equal-width bins (in log space for a log-scale parameter, whose zeros, e.g. a baseline's
    weight_decay = 0, get a bin of their own)."""
    if values.nunique() <= bins:
        return values
    positive = values[values > 0]
    if log and len(positive) > 1:
        edges = np.logspace(np.log10(positive.min()), np.log10(positive.max()), bins + 1)
        edges[0], edges[-1] = 0.0, np.inf
        binned = pd.cut(values, np.unique(edges))
        if (values <= 0).any():
            binned = binned.cat.add_categories("0 (off)")
            binned = binned.cat.reorder_categories(["0 (off)", *binned.cat.categories[:-1]])
            binned[values <= 0] = "0 (off)"
        return binned
    edges = np.linspace(values.min(), values.max(), bins + 1)
    edges[0], edges[-1] = -np.inf, np.inf
    return pd.cut(values, np.unique(edges))


def marginal_effects(
    frame: pd.DataFrame,
    params: list[str],
    objective: str = "final_val_loss",
    log_params: tuple[str, ...] = (),
    bins: int = 5,
) -> pd.DataFrame:
    """For each hyperparameter, the objective of complete trials binned by its value: count,
    mean, standard deviation, median and best. One row per (param, bin)."""
    complete = frame[frame["state"] == COMPLETE]
    parts = []
    for param in params:
        if param not in complete.columns or complete[param].isna().all():
            continue
        data = complete[[param, objective]].dropna()
        if not pd.api.types.is_numeric_dtype(data[param]):
            groups = data.groupby(data[param].astype(str), observed=True)[objective]
        else:
            groups = data.groupby(
                _bins(data[param].astype(float), param in log_params, bins), observed=True
            )[objective]
        stats = groups.agg(["count", "mean", "std", "median", "min", "max"]).reset_index()
        stats = stats.rename(columns={param: "bin"}).assign(param=param)
        stats["bin"] = stats["bin"].astype(str)
        parts.append(stats)
    if not parts:
        return pd.DataFrame(columns=["param", "bin", "count", "mean", "std", "median"])
    table = pd.concat(parts, ignore_index=True)
    return table[["param", "bin", "count", "mean", "std", "median", "min", "max"]]


def importances(
    frame: pd.DataFrame,
    params: list[str],
    objective: str = "final_val_loss",
    log_params: tuple[str, ...] = (),
    seed: int = 0,
) -> pd.DataFrame:
    """How much each hyperparameter explains the objective: permutation importance of a random
    forest fitted on the complete trials (log-scale parameters as their logarithm), normalised
    to sum to 1. Empty with fewer than 8 usable trials."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    complete = frame[frame["state"] == COMPLETE]
    usable = [p for p in params if p in complete.columns and complete[p].notna().any()]
    data = complete[usable + [objective]].dropna()
    if len(data) < 8 or not usable:
        return pd.DataFrame(columns=["param", "importance"])
    X = pd.DataFrame({p: _encode(data[p], p in log_params) for p in usable})
    forest = RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=seed)
    forest.fit(X, data[objective])
    result = permutation_importance(forest, X, data[objective], n_repeats=10, random_state=seed)
    raw = np.clip(result.importances_mean, 0, None)
    total = raw.sum() or 1.0
    table = pd.DataFrame({"param": usable, "importance": raw / total})
    return table.sort_values("importance", ascending=False, ignore_index=True)


def _encode(values: pd.Series, log: bool) -> pd.Series:
    if not pd.api.types.is_numeric_dtype(values):
        return values.astype("category").cat.codes
    values = values.astype(float)
    return np.log10(values) if log and (values > 0).all() else values


def regulariser_effects(
    frame: pd.DataFrame, params: list[str], log_params: tuple[str, ...] = (), bins: int = 4
) -> pd.DataFrame:
    """Each searched regulariser's effect on the generalisation gap, the weight norm and the
    share of exactly-zero weights: Spearman correlation over complete trials, and the mean of
    each metric in the lowest and highest bin of the regulariser."""
    complete = frame[frame["state"] == COMPLETE]
    rows = []
    for param in [p for p in params if p in REGULARISERS and p in complete.columns]:
        data = complete[[param, *EFFECT_METRICS]].dropna()
        if data[param].nunique() < 2:
            continue
        binned = _bins(data[param].astype(float), param in log_params, bins)
        means = data.groupby(binned, observed=True)[list(EFFECT_METRICS)].mean()
        for metric in EFFECT_METRICS:
            rows.append(
                {
                    "param": param,
                    "metric": metric,
                    "spearman": data[param].corr(data[metric], method="spearman"),
                    "low_bin_mean": means[metric].iloc[0],
                    "high_bin_mean": means[metric].iloc[-1],
                }
            )
    return pd.DataFrame(
        rows, columns=["param", "metric", "spearman", "low_bin_mean", "high_bin_mean"]
    )


def pruning_summary(frame: pd.DataFrame, max_epochs: int | None = None) -> pd.DataFrame:
    """Trials by state, and the epochs pruning saved: the epochs pruned trials did not run, out
    of each trial's own ``max_epochs`` (a baseline may train longer than the sweep's trials),
    or out of ``max_epochs`` when given."""
    counts = frame["state"].astype(str).value_counts()
    pruned = frame[frame["state"] == PRUNED]
    if max_epochs is None and "max_epochs" in frame.columns:
        limits = pruned["max_epochs"].astype(float)
    else:
        limits = pd.Series(max_epochs, index=pruned.index, dtype=float)
    run = float(frame["stopped_epoch"].fillna(0).sum()) if "stopped_epoch" in frame else math.nan
    saved = float((limits - pruned["stopped_epoch"]).clip(lower=0).sum()) if len(pruned) else 0.0
    return pd.DataFrame(
        [
            {
                "trials": len(frame),
                COMPLETE: int(counts.get(COMPLETE, 0)),
                PRUNED: int(counts.get(PRUNED, 0)),
                FAILED: int(counts.get(FAILED, 0)),
                INTERRUPTED: int(counts.get(INTERRUPTED, 0)),
                "epochs_run": run,
                "epochs_saved_by_pruning": saved,
                "share_saved": saved / (saved + run) if saved + run else math.nan,
            }
        ]
    )


def best_so_far(
    frame: pd.DataFrame, objective: str = "final_val_loss", direction: str = "minimize"
) -> pd.DataFrame:
    """The best objective after each trial (complete trials, in trial order)."""
    complete = frame[frame["state"] == COMPLETE].sort_values("trial")
    values = complete[objective]
    best = values.cummin() if direction == "minimize" else values.cummax()
    return pd.DataFrame(
        {
            "trial": complete["trial"].to_numpy(),
            "value": values.to_numpy(),
            "best_so_far": best.to_numpy(),
        }
    )


# ---------------------------------------------------------------------------- seeds, ensembles


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


def against_reference(repeated: pd.DataFrame, reference: str = "unregularised") -> pd.DataFrame:
    """Each configuration against ``reference`` on the same seeds: test loss mean and
    standard deviation, their ratio, the paired difference (mean and standard error over
    seeds) and a verdict: ``helps`` or ``hurts`` when the difference is beyond ``NOISE_SE``
    standard errors, else ``no effect within noise``."""
    wide = repeated.pivot_table(index="repeat", columns="configuration", values="test_loss")
    if reference not in wide:
        return pd.DataFrame()
    rows = []
    for name in wide.columns:
        both = wide[name].notna() & wide[reference].notna()  # seeds where both trained
        mine, theirs = wide.loc[both, name], wide.loc[both, reference]
        diff = mine - theirs
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else math.nan
        mean = float(diff.mean()) if len(diff) else math.nan
        if name == reference or not np.isfinite(se):
            verdict = ""
        elif mean + NOISE_SE * se < 0:
            verdict = "helps"
        elif mean - NOISE_SE * se > 0:
            verdict = "hurts"
        else:
            verdict = "no effect within noise"
        rows.append(
            {
                "configuration": name,
                "seeds": len(mine),
                "test_loss_mean": float(mine.mean()),
                "test_loss_std": float(mine.std(ddof=1)),
                f"relative_to_{reference}": float(mine.mean() / theirs.mean()),
                "difference_mean": mean,
                "difference_se": se,
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


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
