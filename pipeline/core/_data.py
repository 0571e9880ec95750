"""Data sets as train / validation / test splits.

``load(name, seed=..., **options)`` returns a :class:`Dataset`. Every set is local: the seed
chapter's ``sine``, scikit-learn's bundled sets, synthetic ``moons`` and ``circles``, and a
user's ``csv``. Nothing is downloaded. Features are standardised with statistics of the training
split only; classification splits are stratified; regression targets of the scikit-learn sets
are standardised the same way (so that one learning rate suits every set).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core._activations import TASKS
from pipeline.core._constraints import NON_NEGATIVE, POSITIVE_INT, Constraint, is_number, one_of


@dataclass(frozen=True)
class Scaling:
    """How the data as given become the network's inputs and targets, kept so that a model
    delivered to a user takes raw features and gives predictions in the target's own units
    and labels: features standardised by the training split's statistics, a regression target
    likewise (or not at all), class labels numbered 0..n_classes-1."""

    features: tuple[str, ...]
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float = 0.0
    y_std: float = 1.0
    classes: tuple[Any, ...] = ()  # the labels as given, in the order of the network's classes

    @classmethod
    def identity(cls, features: tuple[str, ...]) -> Scaling:
        n = len(features)
        return cls(features, np.zeros(n), np.ones(n))

    def inputs(self, X: np.ndarray) -> np.ndarray:
        """Raw features (columns in the order of ``features``) as the network's inputs."""
        return (np.asarray(X, dtype=float) - self.x_mean) / self.x_std

    def outputs(self, predicted: np.ndarray) -> np.ndarray:
        """The network's predictions (class numbers, or scaled targets) in the data's terms."""
        if self.classes:
            return np.asarray(self.classes)[predicted]
        return predicted * self.y_std + self.y_mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "x_mean": self.x_mean.tolist(),
            "x_std": self.x_std.tolist(),
            "y_mean": self.y_mean,
            "y_std": self.y_std,
            "classes": list(self.classes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaling:
        return cls(
            tuple(d["features"]),
            np.asarray(d["x_mean"], dtype=float),
            np.asarray(d["x_std"], dtype=float),
            float(d["y_mean"]),
            float(d["y_std"]),
            tuple(d["classes"]),
        )


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
    scaling: Scaling | None = None  # None: the splits are the data as given

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


REGRESSION = ("sine", "diabetes")  # every other bundled set is classification; a CSV says


def task(name: str, options: dict[str, Any] | None = None) -> str:
    """``regression`` or ``classification``: a bundled set's own, or a CSV's ``task`` option."""
    if name == "csv":
        return str((options or {}).get("task", ""))
    return "regression" if name in REGRESSION else "classification"


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
    scaling = Scaling.identity(("x",))
    return Dataset("sine", task("sine"), X_train, y_train, X_val, y_val, X_test, y_test, scaling)


def _split(
    name: str,
    task: str,
    X: np.ndarray,
    y: np.ndarray,
    seed: int,
    val_size: float,
    test_size: float,
    features: tuple[str, ...] | None = None,
    classes: tuple[Any, ...] | None = None,
) -> Dataset:
    """Stratified (for classification) train/val/test split, scaled on the training split;
    ``features`` names the columns (x0, x1, ... by default), ``classes`` the labels as given
    of the classes numbered 0..k-1 in ``y`` (the numbers themselves by default)."""
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
        X_rest, X_test, y_rest, y_test = train_test_split(
            X, y, test_size=n_test, random_state=seed, stratify=stratify
        )
        X_train, X_val, y_train, y_val = train_test_split(
            X_rest,
            y_rest,
            test_size=n_val,
            random_state=seed,
            stratify=y_rest if stratify is not None else None,
        )
    except ValueError as err:  # e.g. a class with a single member cannot be stratified
        raise ValueError(f"{name}: cannot split into train/val/test: {err}") from None
    splits = (X_train, y_train, X_val, y_val, X_test, y_test)
    return _scaled(name, task, splits, features, classes)


def _scaled(
    name: str,
    task: str,
    splits: tuple[np.ndarray, ...],
    features: tuple[str, ...] | None,
    classes: tuple[Any, ...] | None,
) -> Dataset:
    """The splits standardised by the training split's statistics, which are kept."""
    X_train, y_train, X_val, y_val, X_test, y_test = splits
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    std[std == 0] = 1.0  # a constant feature stays constant (zero) rather than becoming NaN

    def scale(A: np.ndarray) -> np.ndarray:
        return (A - mean) / std

    names = tuple(str(f) for f in features or (f"x{i}" for i in range(X_train.shape[1])))
    scaling = Scaling(names, mean, std)
    if task == "regression":
        y_train, y_val, y_test = (v.reshape(-1, 1).astype(float) for v in (y_train, y_val, y_test))
        y_mean, y_std = float(y_train.mean()), float(y_train.std()) or 1.0
        y_train, y_val, y_test = ((v - y_mean) / y_std for v in (y_train, y_val, y_test))
        scaling = replace(scaling, y_mean=y_mean, y_std=y_std)
    else:
        labels = classes or range(int(np.max(y_train)) + 1)
        scaling = replace(scaling, classes=tuple(_plain(c) for c in labels))
    return Dataset(
        name, task, scale(X_train), y_train, scale(X_val), y_val, scale(X_test), y_test, scaling
    )


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (labels go to JSON and back)."""
    return value.item() if isinstance(value, np.generic) else value


def _sklearn(loader_name: str) -> Callable[..., Dataset]:
    kind = task(loader_name)

    def load_bundled(seed: int = 0, val_size: float = 0.2, test_size: float = 0.2) -> Dataset:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, f"load_{loader_name}")()
        X, y, features = bunch.data.astype(float), bunch.target, tuple(bunch.feature_names)
        classes = tuple(bunch.target_names) if kind == "classification" else None
        return _split(loader_name, kind, X, y, seed, val_size, test_size, features, classes)

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
    return _split("moons", task("moons"), X, y, seed, val_size, test_size)


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
    return _split("circles", task("circles"), X, y, seed, val_size, test_size)


def _csv(
    path: str | None = None,
    target: str | None = None,
    task: str | None = None,
    seed: int = 0,
    val_size: float = 0.2,
    test_size: float = 0.2,
) -> Dataset:
    """A user's CSV file: numeric feature columns and a ``target`` column."""
    import pandas as pd

    if path is None or target is None or task is None:
        missing = [k for k, v in (("path", path), ("target", target), ("task", task)) if v is None]
        raise ValueError(
            f"csv: missing option(s) {missing}: give path, target and task "
            "('classification' or 'regression')"
        )
    if task not in ("classification", "regression"):
        raise ValueError(f"csv: task={task!r} must be 'classification' or 'regression'")
    if not Path(path).is_file():
        raise ValueError(f"csv: path={path!r}: no such file")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"csv: {path}: cannot be read as CSV: {err}") from None
    if target not in frame.columns:
        raise ValueError(
            f"csv: {path}: no target column {target!r}; columns are {list(frame.columns)}"
        )
    missing = frame.columns[frame.isna().any()].tolist()
    if missing:
        counts = {c: int(frame[c].isna().sum()) for c in missing}
        raise ValueError(f"csv: {path}: missing values in column(s) {counts}: impute or drop them")
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise ValueError(f"csv: {path}: no feature columns besides the target {target!r}")
    non_numeric = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise ValueError(
            f"csv: {path}: non-numeric feature column(s) {non_numeric}: encode them "
            "as numbers first"
        )
    X = features.to_numpy(dtype=float)
    if not np.isfinite(X).all():
        column = features.columns[np.argwhere(~np.isfinite(X))[0][1]]
        raise ValueError(f"csv: {path}: infinite values in column {column!r}: drop or clip them")
    y = frame[target].to_numpy()
    if task == "classification":
        labels, y = np.unique(y, return_inverse=True)
        if len(labels) < 2:
            raise ValueError(
                f"csv: {path}: target {target!r} has 1 class ({labels[0]!r}): "
                "classification needs at least 2"
            )
    elif not pd.api.types.is_numeric_dtype(frame[target]):
        raise ValueError(f"csv: {path}: target {target!r} is not numeric; regression needs numbers")
    elif not np.isfinite(y.astype(float)).all():
        raise ValueError(f"csv: {path}: infinite values in the target {target!r}")
    features = tuple(str(c) for c in features.columns)
    classes = tuple(labels) if task == "classification" else None
    return _split(Path(path).stem, task, X, y, seed, val_size, test_size, features, classes)


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
    return _split("irrelevant", task("irrelevant"), X, y, seed, val_size, test_size, names)


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
    "task": one_of(TASKS),
}


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
    return LOADERS[name](**opts)
