"""Data sets no shipped sweep was written for, each swept with ``python -m pipeline init``'s
template exactly as a new user would get it: bundled sets, generated families (irrelevant
features, label noise, few rows, many classes, regression with noise, a nonlinear regression
with irrelevant inputs), and tables as users have them (text columns, integer codes, gaps,
identifiers and dates; a TSV among them): the Palmer penguins, shipped in ``examples/``, and
two generated to look like well-known public tables.
Generated sets are written as files with fixed seeds; nothing in the template is tuned to them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

BUNDLED = ("wine", "iris", "diabetes")


def _classification(**kw: object) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    def make() -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import make_classification

        return make_classification(random_state=0, **kw)  # type: ignore[arg-type]

    return make


def _regression(**kw: object) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    def make() -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import make_regression

        return make_regression(random_state=0, **kw)  # type: ignore[arg-type]

    return make


def _friedman() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_friedman1

    return make_friedman1(n_samples=400, n_features=10, noise=1.0, random_state=0)


GENERATED: dict[str, tuple[str, Callable[[], tuple[np.ndarray, np.ndarray]]]] = {
    # 3 classes, 40 features of which 28 carry nothing
    "irrelevant": (
        "classification",
        _classification(n_samples=400, n_features=40, n_informative=8, n_redundant=4, n_classes=3),
    ),
    # a fifth of the labels flipped at random
    "label-noise": ("classification", _classification(n_samples=400, n_features=20, flip_y=0.2)),
    "few-rows": (
        "classification",
        _classification(n_samples=120, n_features=10, n_informative=5),
    ),
    "many-classes": (
        "classification",
        _classification(
            n_samples=800, n_features=20, n_informative=12, n_classes=8, n_clusters_per_class=1
        ),
    ),
    "noisy-regression": (
        "regression",
        _regression(n_samples=400, n_features=10, n_informative=5, noise=20.0),
    ),
    "friedman": ("regression", _friedman),  # nonlinear; 5 of 10 inputs irrelevant
}


def _passengers(rng: np.random.Generator, n: int = 891) -> pd.DataFrame:
    """Who survived: class, sex, age (a fifth missing), fare; names and tickets as columns."""
    pclass = rng.choice([1, 2, 3], n, p=[0.24, 0.21, 0.55])
    sex = rng.choice(["male", "female"], n, p=[0.65, 0.35])
    age = rng.normal(30, 14, n).clip(0.5, 80).round()
    fare = np.exp(rng.normal(3.6 - 0.6 * pclass, 0.5)).round(2)
    logit = 1.2 * (sex == "female") * 2 - 0.9 * (pclass - 2) - 0.03 * (age - 30) - 1.0
    survived = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    frame = pd.DataFrame(
        {
            "passenger": np.arange(1, n + 1),
            "name": [f"Passenger {i}, Mr. {rng.integers(1e6)}" for i in range(n)],
            "pclass": pclass,
            "sex": sex,
            "age": age,
            "fare": fare,
            "embarked": rng.choice(["S", "C", "Q"], n, p=[0.72, 0.19, 0.09]).astype(object),
            "ticket": [f"T{rng.integers(1e8)}" for _ in range(n)],
            "survived": survived,
        }
    )
    frame.loc[rng.random(n) < 0.2, "age"] = np.nan
    frame.loc[rng.random(n) < 0.01, "embarked"] = None
    return frame


def _houses(rng: np.random.Generator, n: int = 1000) -> pd.DataFrame:
    """Sale prices by neighbourhood (a few rare ones), size, rooms, age and condition."""
    hoods = [f"hood-{c}" for c in "ABCDEFGHIJKL"]
    hood = rng.choice(hoods, n, p=np.r_[np.full(10, 0.098), 0.01, 0.01])
    premium = dict(zip(hoods, rng.normal(0, 40, len(hoods)), strict=True))
    area = rng.gamma(9, 16, n).round()
    rooms = (area / 30 + rng.normal(0, 1, n)).clip(1).round().astype(int)
    built = rng.integers(1900, 2021, n)
    condition = rng.choice(["poor", "fair", "good", "excellent"], n, p=[0.1, 0.3, 0.45, 0.15])
    bonus = pd.Series(condition).map({"poor": -30, "fair": -10, "good": 0, "excellent": 25})
    price = 50 + 1.1 * area + 8 * rooms + 0.4 * (built - 1960) + bonus.to_numpy()
    price += np.array([premium[h] for h in hood]) + rng.normal(0, 20, n)
    frame = pd.DataFrame(
        {
            "neighbourhood": hood,
            "area_m2": area,
            "rooms": rooms,
            "built": built,
            "condition": condition,
            "sold": pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 1500, n), "D"),
            "price_k": price.round(1),
        }
    )
    frame["sold"] = frame["sold"].dt.strftime("%Y-%m-%d")
    frame.loc[rng.random(n) < 0.06, "area_m2"] = np.nan
    frame.loc[rng.random(n) < 0.04, "condition"] = None
    return frame


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# name -> (file name, target, the table): real ones shipped in examples/ (None: copied as they
# are), generated ones written as they come; the template infers the rest
TABLES = {
    "penguins": ("penguins.csv", "species", None),
    "penguins-raw": ("penguins-raw.csv", "Species", None),
    "passengers-like": ("passengers.csv", "survived", _passengers),
    "houses-like": ("houses.tsv", "price_k", _houses),
}


def write_table(name: str, folder: Path) -> tuple[Path, str]:
    """The table ``name`` of :data:`TABLES` in ``folder``: its path and target."""
    file, target, make = TABLES[name]
    path = folder / file
    if make is None:
        path.write_bytes((EXAMPLES / file).read_bytes())
    else:
        frame = make(np.random.default_rng(0))
        frame.to_csv(path, index=False, sep="\t" if file.endswith(".tsv") else ",")
    return path, target


def new_data_sweeps(folder: Path) -> dict[str, Path]:
    """Name -> a sweep file written by the init template into ``folder`` (with the generated
    sets' CSV files beside it)."""
    from pipeline.config import sweep_text

    sweeps = {}
    for name in BUNDLED:
        sweeps[name] = folder / f"new-{name}.toml"
        sweeps[name].write_text(sweep_text(name))
    for name, (task, make) in GENERATED.items():
        X, y = make()
        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
        frame["y"] = y
        csv = folder / f"{name}.csv"
        frame.to_csv(csv, index=False)
        sweeps[name] = folder / f"new-{name}.toml"
        sweeps[name].write_text(sweep_text(str(csv), "y", task))
    for name in TABLES:
        path, target = write_table(name, folder)
        sweeps[name] = folder / f"new-{name}.toml"
        sweeps[name].write_text(sweep_text(str(path), target))
    return sweeps
