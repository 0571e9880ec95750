"""Data sets as train / validation / test splits.

``load(name, seed=..., **options)`` returns a :class:`Dataset`. Every set is local: the seed
chapter's ``sine``, scikit-learn's bundled sets, synthetic ``moons`` and ``circles``, and a
user's ``csv``. Nothing is downloaded. Features are standardised with statistics of the training
split only; classification splits are stratified; regression targets of the scikit-learn sets
are standardised the same way (so that one learning rate suits every set).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core._activations import TASKS
from pipeline.core._constraints import NON_NEGATIVE, POSITIVE_INT, Constraint, is_number, one_of
from pipeline.core._preprocessing import Preprocessing, column_transformer
from pipeline.core._table import (
    NUMERIC,
    ColumnPlan,
    TableError,
    infer_task,
    plan_columns,
    read_table,
)


@dataclass(frozen=True)
class Table:
    """The raw rows behind a data set's splits, kept so that each split (the study's, each
    fold, the delivered model's training + validation) fits its preprocessing on its own
    training rows."""

    frame: pd.DataFrame  # the raw feature columns, every row
    y: np.ndarray  # the network's targets of every row: class numbers, or scaled values
    train: np.ndarray  # row numbers of the study's splits
    val: np.ndarray
    test: np.ndarray
    source: str = ""  # the file read, if any
    target: str = ""  # its target column
    notes: tuple[str, ...] = ()  # what was done to the table as read (rows dropped, ...)


@dataclass(frozen=True)
class Dataset:
    """Splits of one data set. Classification labels are integers 0..n_classes-1."""

    name: str
    task: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    preprocessing: Preprocessing | None = None  # raw columns -> X; outputs -> labels, units
    table: Table | None = None  # None: the splits are the data as given (the chapter's sine)

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


REGRESSION = ("sine", "diabetes")  # every other bundled set is classification; a CSV says


def task(name: str, options: dict[str, Any] | None = None) -> str:
    """``regression`` or ``classification``: a bundled set's own, or a CSV's ``task`` option."""
    if name == "csv":
        opts = options or {}
        if opts.get("task") or not (opts.get("path") and opts.get("target")):
            return str(opts.get("task", ""))
        return _inferred_task(
            str(opts["path"]), str(opts["target"]), opts.get("sep"), opts.get("encoding", "utf-8")
        )
    return "regression" if name in REGRESSION else "classification"


@functools.lru_cache(maxsize=8)
def _inferred_task(path: str, target: str, sep: str | None, encoding: str) -> str:
    """A table's task as its target says (empty when the table cannot be read: loading it
    says why)."""
    try:
        frame = read_table(path, sep, encoding)
    except TableError:
        return ""
    return infer_task(frame[target]) if target in frame.columns else ""


def _sine(
    seed: int = 1, n_train: int = 100, n_val: int = 100, n_test: int = 500, noise: float = 0.5
) -> Dataset:
    """The chapter's task: y = sin(x) + N(0, noise^2), x ~ U(-pi, pi).

    Train then test are drawn from ``default_rng(seed)`` exactly as the chapter does (with the
    default sizes and seed=1 they are the chapter's own points; its test set is noise-free);
    the validation split is drawn afterwards from the same stream, like the training data, so
    it leaves the chapter's sets unchanged. Features are not rescaled, as in the chapter.
    """
    rng = np.random.default_rng(seed)

    def draw(n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
        x = rng.uniform(-np.pi, np.pi, n)
        y = np.sin(x) + rng.normal(0, noise, n)
        return x[:, None], y[:, None]

    X_train, y_train = draw(n_train, noise)
    X_test, y_test = draw(n_test, 0.0)
    X_val, y_val = draw(n_val, noise)
    identity = Preprocessing(numeric_plan(("x",)))
    return Dataset("sine", task("sine"), X_train, y_train, X_val, y_val, X_test, y_test, identity)


def numeric_plan(features: tuple[str, ...]) -> ColumnPlan:
    """Every column a number: the plan of the bundled and generated sets."""
    return ColumnPlan({f: NUMERIC for f in features}, features, ())


def _split(
    name: str,
    task: str,
    frame: pd.DataFrame,
    y: np.ndarray,
    seed: int,
    val_size: float,
    test_size: float,
    classes: tuple[Any, ...] | None = None,
    plan: ColumnPlan | None = None,
    **table: Any,
) -> Dataset:
    """Stratified (for classification) train/val/test split of the raw ``frame`` and targets
    ``y``, preprocessed by ``plan`` (every column a number by default) fitted on the training
    split; ``classes`` are the labels as given of the classes numbered 0..k-1 in ``y`` (the
    numbers themselves by default); ``table`` the :class:`Table`'s source, target and notes."""
    from sklearn.model_selection import train_test_split

    for key, value in (("val_size", val_size), ("test_size", test_size)):
        if not 0 < value < 1:
            raise ValueError(f"{name}: {key}={value!r} must be a fraction in (0, 1)")
    if val_size + test_size >= 1:
        raise ValueError(
            f"{name}: val_size + test_size = {val_size + test_size} leaves no "
            "training data; it must be < 1"
        )
    n = len(y)
    n_test, n_val = round(n * test_size), round(n * val_size)
    n_classes = len(np.unique(y)) if task == "classification" else 1
    needed = max(3 * n_classes, 6)
    if n < needed or min(n_test, n_val, n - n_test - n_val) < n_classes:
        raise ValueError(
            f"{name}: {n} rows are too few for train/val/test splits with "
            f"val_size={val_size}, test_size={test_size}"
            + (f" and {n_classes} classes" if task == "classification" else "")
            + f": each split needs at least {n_classes} row(s)"
        )
    stratify = y if task == "classification" else None
    try:
        rest, test = train_test_split(
            np.arange(n), test_size=n_test, random_state=seed, stratify=stratify
        )
        train, val = train_test_split(
            rest,
            test_size=n_val,
            random_state=seed,
            stratify=y[rest] if stratify is not None else None,
        )
    except ValueError as err:  # e.g. a class with a single member cannot be stratified
        raise ValueError(f"{name}: cannot split into train/val/test: {err}") from None
    plan = plan or numeric_plan(tuple(str(c) for c in frame.columns))
    base = Preprocessing(plan, column_transformer(plan))
    if task == "regression":
        y = y.reshape(len(y), -1).astype(float)
        y_mean, y_std = float(y[train].mean()), float(y[train].std()) or 1.0
        y = (y - y_mean) / y_std
        base = replace(base, y_mean=y_mean, y_std=y_std)
    else:
        labels = classes or range(int(np.max(y)) + 1)
        base = replace(base, classes=tuple(_plain(c) for c in labels))
    rows = Table(frame.reset_index(drop=True), y, train, val, test, **table)
    empty = np.empty((0, 0))
    d = Dataset(name, task, empty, y[:0], empty, y[:0], empty, y[:0], base, rows)
    return split_on(d, train, val)


def split_on(d: Dataset, fit: np.ndarray, held: np.ndarray) -> Dataset:
    """``d`` with rows ``fit`` of its table to train on and ``held`` to validate on (and its
    test rows), the preprocessing fitted on the ``fit`` rows alone."""
    table = d.table
    assert table is not None and d.preprocessing is not None, "split_on needs a table"
    preprocessing = d.preprocessing.fitted(table.frame.iloc[fit])

    def inputs(rows: np.ndarray) -> np.ndarray:
        return preprocessing.inputs(table.frame.iloc[rows])

    return replace(
        d,
        X_train=inputs(fit),
        y_train=table.y[fit],
        X_val=inputs(held),
        y_val=table.y[held],
        X_test=inputs(table.test),
        y_test=table.y[table.test],
        preprocessing=preprocessing,
    )


def _frame(X: np.ndarray, names: Any = None) -> pd.DataFrame:
    """Generated or bundled features as a table: columns ``names`` (x0, x1, ... by default)."""
    columns = [str(c) for c in names] if names is not None else None
    frame = pd.DataFrame(X, columns=columns)
    if columns is None:
        frame.columns = [f"x{i}" for i in range(X.shape[1])]
    return frame


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (labels go to JSON and back)."""
    return value.item() if isinstance(value, np.generic) else value


def _sklearn(loader_name: str) -> Callable[..., Dataset]:
    kind = task(loader_name)

    def load_bundled(seed: int = 0, val_size: float = 0.2, test_size: float = 0.2) -> Dataset:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, f"load_{loader_name}")()
        X = _frame(bunch.data.astype(float), bunch.feature_names)
        classes = tuple(bunch.target_names) if kind == "classification" else None
        return _split(loader_name, kind, X, bunch.target, seed, val_size, test_size, classes)

    load_bundled.__doc__ = f"scikit-learn's bundled `{loader_name}` ({kind})."
    return load_bundled


def _moons(
    seed: int = 0,
    n_samples: int = 200,
    noise: float = 0.3,
    val_size: float = 0.25,
    test_size: float = 0.25,
) -> Dataset:
    """Two interleaved half-moons, noisy and few, so that a wide net overfits."""
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return _split("moons", task("moons"), _frame(X), y, seed, val_size, test_size)


def _circles(
    seed: int = 0,
    n_samples: int = 200,
    noise: float = 0.2,
    factor: float = 0.5,
    val_size: float = 0.25,
    test_size: float = 0.25,
) -> Dataset:
    """A circle inside a circle, noisy and few."""
    from sklearn.datasets import make_circles

    X, y = make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=seed)
    return _split("circles", task("circles"), _frame(X), y, seed, val_size, test_size)


def _csv(
    path: str | None = None,
    target: str | None = None,
    task: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
    categorical: list[str] | None = None,
    drop: list[str] | None = None,
    seed: int = 0,
    val_size: float = 0.2,
    test_size: float = 0.2,
) -> Dataset:
    """A user's table (CSV, TSV or Parquet; see :mod:`pipeline.core._table`) with a ``target``
    column: numbers, categories and gaps as they come. ``task`` is inferred from the target
    when not given; ``categorical`` and ``drop`` change what the column rules decide."""
    if path is None or target is None:
        missing = [k for k, v in (("path", path), ("target", target)) if v is None]
        raise ValueError(f"csv: missing option(s) {missing}: give the table's path and target")
    if task is not None and task not in TASKS:
        raise ValueError(f"csv: task={task!r} must be 'classification' or 'regression'")
    try:
        frame = read_table(path, sep, encoding)
        if len(frame) < 2:
            raise TableError(f"{path}: {len(frame)} row(s): a table needs rows to learn from")
        if target not in frame.columns:
            raise TableError(
                f"{path}: no target column {target!r}; columns are {list(frame.columns)}"
            )
        frame, notes = _with_target(frame, path, target)
        task = task or infer_task(frame[target])
        features = frame.drop(columns=[target])
        if features.shape[1] == 0:
            raise TableError(f"{path}: no feature columns besides the target {target!r}")
        plan = plan_columns(features, categorical or (), drop, where=str(path))
        y, classes = _targets(frame[target], path, target, task)
    except TableError as err:
        raise ValueError(f"csv: {err}") from None
    table = {"source": str(path), "target": target, "notes": notes}
    stem = Path(path).stem
    try:
        return _split(stem, task, features, y, seed, val_size, test_size, classes, plan, **table)
    except ValueError as err:  # said of the data set's name: say it of the file
        raise ValueError(f"csv: {path}: {str(err).removeprefix(f'{stem}: ')}") from None


def _with_target(
    frame: pd.DataFrame, path: str, target: str
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The rows that have a target (the others cannot be learnt from), and what was done."""
    known = frame[target].notna()
    if not known.any():
        raise TableError(f"{path}: the target {target!r} is missing in every row")
    if frame[target][known].nunique() < 2:
        value = frame[target][known].iloc[0]
        raise TableError(
            f"{path}: the target {target!r} has one value ({_plain(value)!r}): nothing to learn"
        )
    numbers = frame.select_dtypes("number").columns
    frame = frame.copy()
    frame[numbers] = frame[numbers].replace([np.inf, -np.inf], np.nan)  # as missing, imputed
    if known.all():
        return frame, ()
    return frame[known], (f"{int((~known).sum())} row(s) without a target {target!r} dropped",)


def _targets(
    column: pd.Series, path: str, target: str, task: str
) -> tuple[np.ndarray, tuple[Any, ...] | None]:
    """The targets as the network learns them: class numbers (with the labels) or numbers."""
    if task == "classification":
        labels, y = np.unique(
            column.astype(str) if column.dtype == object else column, return_inverse=True
        )
        counts = np.bincount(y)
        if counts.min() < 2:
            rare = [_plain(labels[i]) for i in np.flatnonzero(counts < 2)]
            raise TableError(
                f"{path}: the target {target!r} has class(es) {rare} of one row: a class needs "
                "2 rows or more to be split (drop those rows, or merge the class)"
            )
        return y, tuple(labels)
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise TableError(f"{path}: target {target!r} is not numeric; regression needs numbers")
    return column.to_numpy(dtype=float), None


def _irrelevant(
    seed: int = 0,
    n_samples: int = 400,
    n_features: int = 30,
    n_informative: int = 4,
    val_size: float = 0.25,
    test_size: float = 0.25,
) -> Dataset:
    """Two classes that depend on ``n_informative`` of ``n_features`` inputs, the rest noise
    (scikit-learn's ``make_classification``): where L1 can zero the weights of what does not
    matter."""
    from sklearn.datasets import make_classification

    if n_informative > n_features:
        raise ValueError(
            f"irrelevant: n_informative = {n_informative} must be at most n_features = {n_features}"
        )
    X, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=0,
        shuffle=False,  # the informative inputs are the first columns
        random_state=seed,
    )
    names = tuple(
        f"informative{i}" if i < n_informative else f"noise{i - n_informative}"
        for i in range(n_features)
    )
    return _split("irrelevant", task("irrelevant"), _frame(X, names), y, seed, val_size, test_size)


LOADERS: dict[str, Callable[..., Dataset]] = {
    "sine": _sine,
    "digits": _sklearn("digits"),
    "breast_cancer": _sklearn("breast_cancer"),
    "wine": _sklearn("wine"),
    "iris": _sklearn("iris"),
    "diabetes": _sklearn("diabetes"),
    "moons": _moons,
    "circles": _circles,
    "irrelevant": _irrelevant,
    "csv": _csv,
}
NAMES = tuple(LOADERS)


def options(name: str) -> dict[str, Any]:
    """The options a data set accepts, with their defaults."""
    if name not in LOADERS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(NAMES)}")
    return {
        p.name: p.default
        for p in inspect.signature(LOADERS[name]).parameters.values()
        if p.name != "seed"
    }


def check_options(name: str, opts: dict[str, Any]) -> None:
    """Raise ``ValueError`` for an unknown data set or an option it does not take."""
    unknown = set(opts) - set(options(name))
    if unknown:
        raise ValueError(
            f"data set {name!r} has no option(s) {sorted(unknown)}; it accepts "
            f"{sorted(options(name))}"
        )


FRACTION = Constraint("a fraction in (0, 1)", lambda v: is_number(v) and 0 < v < 1)
TEXT = Constraint("a string", lambda v: isinstance(v, str) and v != "")
# What each data-set option may be (the loaders' keywords share these names).
OPTION_CONSTRAINTS: dict[str, Constraint] = {
    "n_train": POSITIVE_INT,
    "n_val": POSITIVE_INT,
    "n_test": POSITIVE_INT,
    "n_samples": Constraint("an integer >= 12", lambda v: POSITIVE_INT.test(v) and v >= 12),
    "noise": NON_NEGATIVE,
    "factor": FRACTION,
    "n_features": POSITIVE_INT,
    "n_informative": POSITIVE_INT,
    "val_size": FRACTION,
    "test_size": FRACTION,
    "path": TEXT,
    "target": TEXT,
    "sep": Constraint(
        'one character, e.g. "," or "\\t"', lambda v: isinstance(v, str) and len(v) == 1
    ),
    "encoding": TEXT,
    "categorical": Constraint("a list of column names", lambda v: _names(v)),
    "drop": Constraint("a list of column names", lambda v: _names(v)),
    "task": one_of(TASKS),
}


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def option_problems(name: str, opts: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(option, value, what is allowed) for each option value data set ``name`` cannot take."""
    return [
        (key, value, OPTION_CONSTRAINTS[key].allowed)
        for key, value in opts.items()
        if key in OPTION_CONSTRAINTS and not OPTION_CONSTRAINTS[key].test(value)
    ]


def load(name: str, seed: int | None = None, **opts: Any) -> Dataset:
    """Load data set ``name`` with its ``opts`` (see :func:`options`); ``seed`` fixes the split
    (and, for synthetic sets, the samples). The default seed is the set's own (1 for ``sine``,
    the chapter's; 0 for the others)."""
    check_options(name, opts)
    for key, value, allowed in option_problems(name, opts):
        raise ValueError(f"{key} = {value!r}: must be {allowed}")
    if seed is not None:
        opts["seed"] = seed
    key = _cache_key(name, opts)
    if key not in _LOADED:
        if len(_LOADED) >= 2:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = LOADERS[name](**opts)
    return _LOADED[key]


# the data sets this process loaded: a worker's warm-up, its trials and the sweep's end share
# one (a big table takes seconds to read and preprocess); a file read again once it changes
_LOADED: dict[str, Dataset] = {}


def _cache_key(name: str, opts: dict[str, Any]) -> str:
    import json

    path = Path(str(opts.get("path", "")))
    changed = None
    if name == "csv" and path.is_file():
        changed = (path.stat().st_mtime_ns, path.stat().st_size)
    return json.dumps([name, opts, changed], sort_keys=True, default=str)
