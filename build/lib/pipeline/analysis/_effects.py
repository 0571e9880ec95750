"""Summaries of the analysis frames: the leaderboard, each configuration against the baselines,
the marginal effect and importance of each hyperparameter, pruning, the best so far, and seed
by seed comparisons. Frames in, frames out: nothing here reads the store."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.names import (
    COMPLETE,
    FAILED,
    INTERRUPTED,
    NOISE_SE,
    PRUNED,
    REGULARISERS,
)

EFFECT_METRICS = ("gen_gap", "weight_norm", "sparsity")


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
