"""A sweep file for a user's data (``python -m pipeline init``): the new-data template, with the
data set's own section filled in and every choice commented, checked like any sweep file
before it is written.

The recipe is the shipped breast-cancer sweep's, made for small tabular sets: a 2 x 64 ReLU
network started from scikit-learn's (Glorot's) initial weights and trained with momentum SGD on
mini-batches of 32, 5-fold cross-validation over training + validation, the top 3
configurations and the baselines re-run over 5 seeds, the chosen one refitted on all non-test
data from each of those seeds and averaged. The search covers the
chapter's regularisers and the learning rate. How it fares against scikit-learn's MLP on data
sets it was not written for is measured by ``make bench-quality`` and logged in
docs/results-log.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pipeline.core import Dataset, data, delimiter_of

TEMPLATE = """\
# A sweep for {what},
# written by `python -m pipeline init`: edit freely, then
#   python -m pipeline check {file}    (what it would do, writing nothing)
#   python -m pipeline sweep {file}    (about {minutes} on 2 cores)
# Every key, its default and what it may be: docs/sweep-file.md.
[study]
name = "{name}"
description = "the chapter's regularisers on {what}"
metric = "{metric}"  # what selects the configuration, on validation
n_trials = 40
seed = 0
{recipe}
[data]
{data}
[fixed]
hidden = [64, 64]
activation = "relu"
init = "glorot"   # scikit-learn's initial weights: smaller than He's where inputs are many
optimizer = "momentum"
batch_size = {batch}
max_epochs = {epochs}

[search]
keep_prob = {{ type = "float", low = 0.5, high = 1.0 }}          # dropout; 1 is off
weight_decay = {{ type = "float", low = 1e-6, high = 1e-1, log = true }}
l1 = {{ type = "float", low = 1e-7, high = 1e-2, log = true }}
patience = {{ type = "int", low = 0, high = 30, step = 5 }}      # early stopping; 0 is off
lr = {{ type = "float", low = 1e-3, high = 1e-1, log = true }}

[pruner]
name = "median"
n_startup_trials = 6
n_warmup_steps = 1  # with folds the step is the fold
"""


TABLES = (".csv", ".tsv", ".tab", ".txt", ".parquet", ".pq")
BIG = 20_000  # rows from which the template trades cross-validation and the peer for time
SMALL = """\
folds = 5         # cross-validation over training + validation: small sets need it
repeats = 5       # the top configurations and the baselines trained again over 5 seeds
top_k = 3
deliver = "ensemble" # the chosen configuration trained again on all non-test data from
                     # each re-run seed, averaged, tested once ("refit": from one seed)
peer = true       # scikit-learn's MLP, alpha by GridSearchCV, on the same data, tested beside"""
# a big table: its validation split is large enough to choose on, one network's seed matters
# little, and a trial's every epoch is long: no folds, no re-runs, one refit, no peer
LARGE = """\
# folds = 5       # off: the validation split is large enough, and 5 times cheaper
# repeats = 5     # off: re-runs over seeds cost a trial each; a big table's seed matters little
deliver = "refit" # the chosen configuration trained again on all non-test data, tested once
peer = false      # scikit-learn's MLP would take longer than the sweep on this many rows"""
SIZES = {
    SMALL: {"batch": 32, "epochs": 150, "minutes": "a few minutes"},
    LARGE: {"batch": 256, "epochs": 20, "minutes": "5-10 minutes"},
}


def data_stem(source: str) -> str:
    """A data set's name or a table file's stem, as names allow: letters, digits, '_', '.', '-'
    (the default sweep file is ``sweeps/<stem>.toml``)."""
    stem = Path(source).stem if Path(source).suffix.lower() in TABLES else source
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-_.") or "data"


def study_name(source: str) -> str:
    """The study's name for a data set: ``<stem>-regularisation``."""
    return f"{data_stem(source)}-regularisation"


def sweep_text(
    source: str, target: str | None = None, task: str | None = None, file: str = "sweep.toml"
) -> str:
    """The sweep file for ``source`` (a bundled data set's name, or a table file's path with
    its ``target`` column; ``task`` inferred from the target when not given). Raises
    ValueError naming what is wrong and what is allowed when the data cannot be loaded as
    asked."""
    if Path(source).suffix.lower() in TABLES or Path(source).is_file():
        if target is None:
            raise ValueError(f"{source}: a table needs --target COLUMN, the column to predict")
        given: dict[str, Any] = {"task": task} if task else {}
        dataset = data.load("csv", path=source, target=target, **given)
        section = table_section(source, target, task, dataset)
    elif source in data.NAMES and source != "csv":
        dataset = data.load(source)
        section = f'name = "{source}"\n'
    else:
        bundled = ", ".join(n for n in data.NAMES if n != "csv")
        raise ValueError(
            f"data {source!r}: not a table file ({', '.join(TABLES)}) nor a bundled data set "
            f"({bundled})"
        )
    rows = sum(dataset.sizes().values())
    recipe = LARGE if rows >= BIG else SMALL
    inputs = len(dataset.preprocessing.features) if dataset.preprocessing else dataset.n_features
    return TEMPLATE.format(
        what=f"{Path(source).name} ({rows} rows, {inputs} input columns, {dataset.task})",
        file=file,
        name=study_name(source),
        metric="val_accuracy" if dataset.task == "classification" else "val_loss",
        data=section,
        recipe=recipe,
        **(SIZES[recipe] | ({"minutes": "a minute"} if rows < 1000 else {})),
    )


def table_section(source: str, target: str, task: str | None, dataset: Dataset) -> str:
    """The ``[data]`` section of a table: where it is, its target and task (inferred, and
    why, when not given), its delimiter when not a comma, and each column's kind with the
    ``categorical`` and ``drop`` lists that decide what becomes of it."""
    assert dataset.table is not None and dataset.preprocessing is not None
    plan = dataset.preprocessing.plan
    lines = [
        'name = "csv"',
        f"path = {json.dumps(source)}",
        f"target = {json.dumps(target)}",
        f'task = "{dataset.task}"' + ("" if task else f"  # inferred: {task_reason(dataset)}"),
    ]
    if Path(source).suffix.lower() not in (".parquet", ".pq"):
        sep = delimiter_of(source)
        if sep != ",":
            lines.append(f"sep = {json.dumps(sep)}")
    lines.append("# the columns as read: kind, and what becomes of each")
    lines += [f"#   {line}" for line in plan.lines()]
    lines += [f"# {note}" for note in dataset.table.notes]
    lines.append('categorical = []  # integer codes to one-hot rather than scale, e.g. ["zip"]')
    dropped = json.dumps(list(plan.dropped))
    lines.append(f"drop = {dropped}  # not inputs: identifiers, dates, free text, constant columns")
    return "\n".join(lines) + "\n"


def task_reason(dataset: Dataset) -> str:
    """Why the target reads as its task, in words (--task overrides)."""
    if dataset.task == "regression":
        return "the target holds many distinct numbers; --task classification overrides"
    n = len(dataset.preprocessing.classes) if dataset.preprocessing else 0
    return f"the target holds {n} distinct labels; --task regression overrides"


def data_lines(text: str) -> list[str]:
    """The ``[data]`` section of a sweep file ``text``, its comments as plain lines: what
    ``init`` found in the table, said on the console."""
    section = text.split("[data]\n", 1)[1].split("\n[", 1)[0]
    return [line.removeprefix("# ").rstrip() for line in section.splitlines() if line.strip()]
