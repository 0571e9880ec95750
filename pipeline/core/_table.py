"""A user's table as it comes: read (CSV or TSV with the delimiter sniffed, or Parquet), each
column given a kind, and the inputs planned: which columns are numbers to impute and scale,
which are categories to one-hot, which are not inputs at all (identifiers, dates, free text,
constant or empty columns), and why.

The rules, in order, for a column's values without its gaps:

- ``empty``: every value missing; ``constant``: one value;
- ``boolean``: a boolean column, or two values spelt true/false, yes/no, t/f or y/n;
- ``integer``: whole numbers (an ``identifier`` if every row has its own, consecutive, number);
- ``numeric``: other numbers;
- ``date``: text that reads as dates or times;
- ``text``: long text (on average over 40 characters, or 4 words), most values distinct;
- ``identifier``: other text with a value of its own in every row;
- ``categorical``: any other text.

Numbers (``numeric``, ``integer``) are inputs as numbers, categories (``categorical``,
``boolean``) one-hot; the rest are dropped. A sweep file's ``categorical`` list one-hots
integer codes instead; its ``drop`` list, when given, is the whole list of dropped columns.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

NUMERIC, INTEGER, BOOLEAN, CATEGORICAL = "numeric", "integer", "boolean", "categorical"
TEXT, IDENTIFIER, DATE, CONSTANT, EMPTY = "text", "identifier", "date", "constant", "empty"
KINDS = (NUMERIC, INTEGER, BOOLEAN, CATEGORICAL, TEXT, IDENTIFIER, DATE, CONSTANT, EMPTY)
NUMBERS, CATEGORIES = (NUMERIC, INTEGER), (CATEGORICAL, BOOLEAN)
WHY_DROPPED = {
    TEXT: "free text",
    IDENTIFIER: "an identifier",
    DATE: "dates",
    CONSTANT: "one value",
    EMPTY: "every value missing",
}
PARQUET = (".parquet", ".pq")
DELIMITERS = ",;\t|"
_BOOLEAN_WORDS = ({"true", "false"}, {"yes", "no"}, {"t", "f"}, {"y", "n"})
_MIN_UNIQUE_ROWS = 20  # fewer rows than this: every value distinct says little


class TableError(ValueError):
    """A table that cannot be read or used as asked; the message names the file."""


def read_table(path: str | Path, sep: str | None = None, encoding: str = "utf-8") -> pd.DataFrame:
    """The table at ``path`` as pandas reads it: Parquet by its suffix, else delimited text
    with ``sep`` (sniffed among , ; tab | when not given) in ``encoding``."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise TableError(f"{path}: the file is empty")
    if path.suffix.lower() in PARQUET:
        try:
            return pd.read_parquet(path)
        except Exception as err:  # pyarrow's errors have no common base
            raise TableError(f"{path}: cannot be read as Parquet: {err}") from None
    with path.open("rb") as f:
        raw = f.read(65536)
    try:
        head = raw.decode(encoding, errors="strict")
    except UnicodeDecodeError as err:
        if err.start < len(raw) - 4:  # not a character cut at the end of the first block
            byte = raw[err.start : err.start + 1]
            raise TableError(
                f"{path}: not {encoding} text (byte {err.start}: {byte!r}): give its encoding "
                'as [data] encoding, e.g. "latin-1" or "cp1252"'
            ) from None
        head = raw[: err.start].decode(encoding)
    except LookupError:
        raise TableError(
            f"{path}: encoding = {encoding!r} is not an encoding Python knows"
        ) from None
    sep = sep or _sniffed(head)
    _refuse_duplicate_columns(path, head, sep)
    try:
        return pd.read_csv(path, sep=sep, encoding=encoding)
    except UnicodeDecodeError as err:
        raise TableError(
            f"{path}: not {encoding} text past its start ({err.reason}): give its encoding as "
            '[data] encoding, e.g. "latin-1"'
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise TableError(f"{path}: cannot be read with delimiter {sep!r}: {err}") from None


def delimiter_of(path: str | Path, encoding: str = "utf-8") -> str:
    """The delimiter :func:`read_table` finds in the text file at ``path``."""
    with Path(path).open("rb") as f:
        return _sniffed(f.read(65536).decode(encoding, errors="replace"))


def _sniffed(head: str) -> str:
    """The delimiter of the text ``head``, as Python's csv sniffer finds it (a comma when it
    cannot tell, as for a table of one column)."""
    lines = head.splitlines()[:50]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def _refuse_duplicate_columns(path: Path, head: str, sep: str) -> None:
    # pandas renames a repeated name silently (``a``, ``a.1``): which is which is the user's
    header = next(csv.reader(head.splitlines()[:1], delimiter=sep), [])
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise TableError(f"{path}: column name(s) {repeated} appear more than once: rename them")


def kind_of(column: pd.Series) -> str:
    """The kind of a column, by the rules of the module's docstring."""
    values = column.dropna()
    if values.empty:
        return EMPTY
    if values.nunique() == 1:
        return CONSTANT
    if pd.api.types.is_bool_dtype(values) or _boolean_words(values):
        return BOOLEAN
    if pd.api.types.is_numeric_dtype(values):
        if not np.all(np.mod(values.to_numpy(dtype=float), 1) == 0):
            return NUMERIC
        return IDENTIFIER if _numbered_rows(values) else INTEGER
    text = values.astype(str)
    if _dates(text):
        return DATE
    long = text.str.len().mean() > 40 or text.str.count(" ").mean() >= 3
    if long and text.nunique() > len(text) / 2:
        return TEXT
    if text.is_unique and len(text) >= _MIN_UNIQUE_ROWS:
        return IDENTIFIER
    return CATEGORICAL


def _boolean_words(values: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(values):
        return False
    words = set(values.astype(str).str.strip().str.lower().unique())
    return len(words) == 2 and any(words == pair for pair in _BOOLEAN_WORDS)


def _numbered_rows(values: pd.Series) -> bool:
    """Every row its own whole number, consecutive: a row number, not a quantity."""
    n = len(values)
    return n >= _MIN_UNIQUE_ROWS and values.is_unique and values.max() - values.min() + 1 == n


def _dates(text: pd.Series) -> bool:
    sample = text.sample(min(len(text), 200), random_state=0)
    if not sample.str.contains(r"\d[-/:.]\d", regex=True).all():
        return False
    import warnings

    with warnings.catch_warnings():  # "could not infer format": dateutil's, per value
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= 0.9)


@dataclass(frozen=True)
class ColumnPlan:
    """What becomes of each feature column: its kind, and whether it is an input as a number,
    as a category, or dropped (with why)."""

    kinds: dict[str, str]
    numbers: tuple[str, ...]
    categories: tuple[str, ...]
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why
    gaps: dict[str, int] = field(default_factory=dict)  # input column -> missing values

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input columns, in the table's order."""
        used = set(self.numbers) | set(self.categories)
        return tuple(c for c in self.kinds if c in used)

    def lines(self) -> list[str]:
        """One line a column: its name, kind, gaps and what becomes of it."""
        out = []
        for column, kind in self.kinds.items():
            if column in self.dropped:
                fate = f"dropped: {self.dropped[column]}"
            else:
                fate = "one-hot" if column in self.categories else "scaled"
            gaps = self.gaps.get(column, 0)
            out.append(f"{column}: {kind}, {fate}" + (f" ({gaps} missing)" if gaps else ""))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kinds": self.kinds,
            "numbers": list(self.numbers),
            "categories": list(self.categories),
            "dropped": self.dropped,
            "gaps": self.gaps,
        }


def plan_columns(
    features: pd.DataFrame,
    categorical: list[str] | tuple[str, ...] = (),
    drop: list[str] | tuple[str, ...] | None = None,
    where: str = "table",
) -> ColumnPlan:
    """The plan for ``features`` (the table without its target): ``categorical`` columns are
    one-hot whatever their kind; ``drop``, when given, is the whole list of dropped columns
    (else those whose kind is not an input). Raises TableError, naming ``where``, for a listed
    column that is not in the table or when no input is left."""
    for key, listed in (("categorical", categorical), ("drop", drop or ())):
        unknown = [c for c in listed if c not in features.columns]
        if unknown:
            raise TableError(
                f"{where}: {key} = {unknown}: no such column; columns are {list(features.columns)}"
            )
    kinds = {str(c): kind_of(features[c]) for c in features.columns}
    if drop is None:
        dropped = {c: WHY_DROPPED[k] for c, k in kinds.items() if k in WHY_DROPPED}
        dropped = {c: why for c, why in dropped.items() if c not in categorical}
    else:
        dropped = {c: WHY_DROPPED.get(kinds[c], "listed in drop") for c in drop}
    kept = [c for c in kinds if c not in dropped]
    categories = tuple(c for c in kept if c in categorical or not _numbers(features[c]))
    numbers = tuple(c for c in kept if c not in categories)
    if not kept:
        raise TableError(f"{where}: no input column is left (dropped: {dropped})")
    gaps = {c: int(n) for c, n in features[kept].isna().sum().items() if n}
    return ColumnPlan(kinds, numbers, categories, dropped, gaps)


def _numbers(column: pd.Series) -> bool:
    """Whether a kept column is read as numbers (else as categories)."""
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def infer_task(target: pd.Series) -> str:
    """``classification`` for a target of text, booleans or a few distinct whole numbers (at
    most 20, and at most a tenth of the rows); else ``regression``."""
    values = target.dropna()
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "classification"
    whole = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
    distinct = values.nunique()
    return "classification" if whole and distinct <= min(20, len(values) / 10) else "regression"
