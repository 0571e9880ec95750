"""Data sets: splits, stratification, scaling fitted on the training split, clear CSV errors."""

import numpy as np
import pandas as pd
import pytest

from pipeline.core import load
from pipeline.core._data import NAMES


@pytest.mark.parametrize("name", [n for n in NAMES if n != "csv"])
def test_every_bundled_set_loads_as_three_disjoint_splits(name):
    d = load(name, seed=0)
    sizes = d.sizes()
    assert min(sizes.values()) > 0
    for X, y in ((d.X_train, d.y_train), (d.X_val, d.y_val), (d.X_test, d.y_test)):
        assert X.ndim == 2 and X.shape[1] == d.n_features and len(X) == len(y)
        assert np.isfinite(X).all()
    assert d.task in ("regression", "classification")
    if name in ("moons", "circles", "sine", "diabetes", "breast_cancer"):  # no duplicate rows
        train = {r.tobytes() for r in d.X_train}
        assert not any(r.tobytes() in train for r in (*d.X_val, *d.X_test))


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "wine", "diabetes", "moons"])
def test_scaling_uses_training_statistics_only(name):
    d = load(name, seed=0)
    varying = d.X_train.std(axis=0) > 0
    np.testing.assert_allclose(d.X_train.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(d.X_train.std(axis=0)[varying], 1, rtol=1e-9)
    # the other splits are transformed with the training statistics, so they are not exactly 0/1
    assert np.abs(d.X_test.mean(axis=0)).max() > 1e-6


@pytest.mark.parametrize("name", ["breast_cancer", "wine", "iris", "digits"])
def test_classification_splits_are_stratified(name):
    d = load(name, seed=0)
    shares = [np.bincount(y, minlength=10) / len(y) for y in (d.y_train, d.y_val, d.y_test)]
    assert np.abs(shares[0] - shares[1]).max() < 0.05
    assert np.abs(shares[0] - shares[2]).max() < 0.05


def test_seed_changes_the_split_and_is_reproducible():
    a, b, c = load("wine", seed=0), load("wine", seed=0), load("wine", seed=1)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.X_train, c.X_train)


def test_synthetic_sets_take_their_options():
    d = load("moons", seed=3, n_samples=400, noise=0.1)
    assert sum(d.sizes().values()) == 400


def test_unknown_set_and_option_are_named():
    with pytest.raises(ValueError, match="unknown data set 'mnist'.*known: sine"):
        load("mnist")
    with pytest.raises(ValueError, match=r"no option\(s\) \['noise_level'\].*accepts"):
        load("moons", noise_level=0.2)


@pytest.fixture
def csv_file(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    frame["label"] = np.where(frame.a + frame.b > 0, "yes", "no")
    path = tmp_path / "points.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_csv_loads_a_users_file(csv_file):
    path, frame = csv_file
    d = load("csv", path=str(path), target="label", task="classification")
    assert d.name == "points" and d.n_features == 2 and sum(d.sizes().values()) == 60
    assert set(np.unique(d.y_train)) == {0, 1}
    frame.drop(columns="label").to_csv(path, index=False)
    reg = load("csv", path=str(path), target="a", task="regression")
    assert reg.task == "regression" and reg.n_features == 1


@pytest.mark.parametrize(
    ("write", "target", "match"),
    [
        (lambda f, p: p.write_text(""), "price", "the file is empty"),
        (lambda f, p: f.head(1).to_csv(p, index=False), "label", r"1 row\(s\)"),
        (lambda f, p: f.to_csv(p, index=False), "price", "no target column 'price'"),
        (
            lambda f, p: p.write_text("a,b,a,label\n" + "1,2,3,x\n" * 10),
            "label",
            r"column name\(s\) \['a'\] appear more than once",
        ),
        (
            lambda f, p: p.write_bytes(b"a,label\n" + "1,caf\xe9\n".encode("latin-1") * 9),
            "label",
            r"not utf-8 text \(byte \d+: b'\\xe9'\): give its encoding as \[data\] encoding",
        ),
        (
            lambda f, p: f.assign(label=np.nan).to_csv(p, index=False),
            "label",
            "missing in every row",
        ),
        (
            lambda f, p: f.assign(label="yes").to_csv(p, index=False),
            "label",
            "one value \\('yes'\\)",
        ),
        (
            lambda f, p: f.assign(label=["rare"] + ["yes", "no"] * 29 + ["no"]).to_csv(
                p, index=False
            ),
            "label",
            r"class\(es\) \['rare'\] of one row",
        ),
        (lambda f, p: f.head(5).to_csv(p, index=False), "a", "too few"),
        (
            lambda f, p: f[["label"]].assign(n=np.arange(60)).to_csv(p, index=False),
            "label",
            "no input column is left",
        ),
    ],
)
def test_a_table_that_cannot_be_used_is_refused_naming_the_file_and_what_is_wrong(
    tmp_path, csv_file, write, target, match
):
    _, frame = csv_file
    path = tmp_path / "bad.csv"
    write(frame, path)
    with pytest.raises(ValueError, match=match) as refused:
        load("csv", path=str(path), target=target)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)


def test_csv_needs_path_and_target(tmp_path):
    with pytest.raises(ValueError, match=r"missing option\(s\) \['target'\]"):
        load("csv", path="x.csv")
    with pytest.raises(ValueError, match="no such file"):
        load("csv", path=str(tmp_path / "none.csv"), target="y", task="regression")
