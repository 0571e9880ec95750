"""A user's table as it comes: read whatever its delimiter or format, each column's kind, the
task from the target, and the preprocessing fitted on a split's training rows alone."""

import numpy as np
import pandas as pd
import pytest
from tables import mixed_table

from pipeline.core import Preprocessing, infer_task, load, plan_columns, read_table, splits_of
from pipeline.core._table import kind_of


@pytest.fixture
def table_file(tmp_path):
    frame = mixed_table(240)
    path = tmp_path / "penguins.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_each_column_gets_its_kind_and_what_becomes_of_it():
    frame = mixed_table(240).assign(
        flat=7,
        blank=np.nan,
        note=[f"seen near the shore with {i} others at dawn" for i in range(240)],
    )
    plan = plan_columns(frame.drop(columns="species"))
    assert plan.kinds == {
        "id": "identifier",
        "island": "categorical",
        "sex": "categorical",
        "bill_mm": "numeric",
        "mass_g": "integer",
        "tagged": "boolean",
        "seen": "date",
        "flat": "constant",
        "blank": "empty",
        "note": "text",
    }
    assert plan.numbers == ("bill_mm", "mass_g")
    assert plan.categories == ("island", "sex", "tagged")
    assert set(plan.dropped) == {"id", "seen", "flat", "blank", "note"}
    assert plan.gaps == {"sex": frame.sex.isna().sum(), "bill_mm": frame.bill_mm.isna().sum()}
    # the user's lists: integer codes one-hot, the whole list of dropped columns
    mine = plan_columns(frame.drop(columns="species"), categorical=["mass_g"], drop=["note"])
    assert "mass_g" in mine.categories and list(mine.dropped) == ["note"]
    assert "id" in mine.numbers  # not dropped any more: a number
    with pytest.raises(ValueError, match=r"categorical = \['nope'\]: no such column"):
        plan_columns(frame, categorical=["nope"])


def test_kinds_of_whole_numbers_booleans_and_floats():
    assert kind_of(pd.Series([1, 2, 3, 2, 1])) == "integer"
    assert kind_of(pd.Series(np.arange(100) + 5)) == "identifier"
    assert kind_of(pd.Series(np.arange(100) * 3)) == "integer"  # distinct, not consecutive
    assert kind_of(pd.Series([True, False, None])) == "boolean"
    assert kind_of(pd.Series(["Y", "n", "y"])) == "boolean"
    assert kind_of(pd.Series([0.5, 1.5, np.nan])) == "numeric"


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_the_delimiter_is_sniffed(tmp_path, sep):
    frame = mixed_table(60)
    path = tmp_path / "t.txt"
    frame.to_csv(path, sep=sep, index=False)
    read = read_table(path)
    assert list(read.columns) == list(frame.columns)
    pd.testing.assert_frame_equal(read, pd.read_csv(path, sep=sep))


def test_parquet_and_a_named_encoding_are_read(tmp_path):
    frame = mixed_table(60)
    frame.to_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.parquet"), frame)
    frame.assign(island="Café").to_csv(tmp_path / "l.csv", index=False, encoding="latin-1")
    assert set(read_table(tmp_path / "l.csv", encoding="latin-1").island) == {"Café"}


def test_the_task_is_inferred_from_the_target():
    assert infer_task(pd.Series(["a", "b", "a"])) == "classification"
    assert infer_task(pd.Series([True, False] * 10)) == "classification"
    assert infer_task(pd.Series([1, 2, 3] * 20)) == "classification"
    assert infer_task(pd.Series(np.linspace(0, 1, 60))) == "regression"
    assert infer_task(pd.Series(np.arange(60))) == "regression"  # many distinct whole numbers


def test_each_fold_fits_its_preprocessing_on_its_own_training_rows(tmp_path):
    frame = mixed_table(300)
    d0 = load("csv", path=_written(tmp_path, frame), target="species")
    pooled = np.concatenate([d0.table.train, d0.table.val])
    held_rows = pooled[np.arange(len(pooled)) % 5 == 0]
    # rows that would move every statistic if they were seen: huge bills, a new island
    frame.loc[held_rows, "bill_mm"] += 1000
    frame.loc[held_rows, "island"] = "Atlantis"
    d = load("csv", path=_written(tmp_path, frame), target="species")
    for fold in splits_of(d, 5, 0):
        fit = _rows_of(d, fold.X_train, fold)
        raw = d.table.frame.iloc[fit]
        scaler = fold.preprocessing.transformer.named_transformers_["numbers"]
        imputed = scaler.named_steps["impute"].statistics_
        # every statistic is the fold's training rows', however the held rows lie
        assert imputed[0] == pytest.approx(raw.bill_mm.median())
        assert scaler.named_steps["scale"].mean_[0] == pytest.approx(
            raw.bill_mm.fillna(raw.bill_mm.median()).mean()
        )
        encoder = fold.preprocessing.transformer.named_transformers_["categories"]
        seen = set(raw.island.dropna())
        assert set(encoder.categories_[0]) == seen
        np.testing.assert_allclose(
            fold.X_train.mean(axis=0)[: len(scaler.named_steps["scale"].mean_)], 0, atol=1e-9
        )


def _rows_of(d, X_train, fold):
    """The table's rows a fold trains on: those its preprocessing turns into X_train."""
    pooled = np.concatenate([d.table.train, d.table.val])
    inputs = fold.preprocessing.inputs(d.table.frame.iloc[pooled])
    matches = [np.flatnonzero(np.abs(inputs - x).max(axis=1) < 1e-12)[0] for x in X_train]
    return pooled[matches]


def _written(tmp_path, frame):
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    return str(path)


def test_the_preprocessing_is_saved_as_json_and_a_pickle_of_scikit_learn_alone(
    tmp_path, table_file
):
    path, frame = table_file
    d = load("csv", path=str(path), target="species")
    d.preprocessing.save(tmp_path)
    back = Preprocessing.load(tmp_path)
    raw = frame.drop(columns="species")
    np.testing.assert_array_equal(back.inputs(raw), d.preprocessing.inputs(raw))
    assert back.classes == ("Adelie", "Chinstrap")
    assert _pickled_modules(tmp_path / "transformer.joblib") <= {"sklearn", "numpy", "joblib"}


def _pickled_modules(path) -> set[str]:
    """The top-level packages of every class the pickle at ``path`` names, as it loads."""
    from joblib.numpy_pickle import NumpyUnpickler

    found = set()

    class Recording(NumpyUnpickler):
        def find_class(self, module, name):
            found.add(module.split(".")[0])
            return super().find_class(module, name)

    with open(path, "rb") as f:
        Recording(str(path), f, ensure_native_byte_order=False).load()
    return found - {"builtins", "copyreg", "_codecs"}


def test_infinite_numbers_are_missing_values_imputed_like_the_others(tmp_path):
    frame = mixed_table(120)
    frame["bill_mm"] = frame["bill_mm"].astype(float)
    frame.loc[[3, 4], "bill_mm"] = [np.inf, -np.inf]
    path = tmp_path / "inf.csv"
    frame.to_csv(path, index=False)
    d = load("csv", path=str(path), target="species")
    assert np.isfinite(d.X_train).all() and np.isfinite(d.X_test).all()
    assert d.table.frame["bill_mm"].isna().sum() == frame["bill_mm"].isna().sum() + 2


def test_the_raw_penguins_as_recorded_get_their_kinds():
    """A real table as its field data were recorded (examples/penguins-raw.csv)."""
    from pathlib import Path

    raw = read_table(Path(__file__).resolve().parents[1] / "examples" / "penguins-raw.csv")
    plan = plan_columns(raw.drop(columns="Species"))
    assert plan.dropped == {"Region": "one value", "Stage": "one value", "Date Egg": "dates"}
    assert {"Island", "Sex", "Clutch Completion", "Comments"} <= set(plan.categories)
    assert plan.kinds["Clutch Completion"] == "boolean"
    assert plan.gaps["Sex"] == raw["Sex"].isna().sum() > 0  # "NA" read as missing
    assert infer_task(raw["Species"]) == "classification"
