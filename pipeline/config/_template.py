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

from pipeline.core import data

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
folds = 5         # cross-validation over training + validation: small sets need it
repeats = 5       # the top configurations and the baselines trained again over 5 seeds
top_k = 3
deliver = "ensemble" # the chosen configuration trained again on all non-test data from
                     # each re-run seed, averaged, tested once ("refit": from one seed)

[data]
{data}
[fixed]
hidden = [64, 64]
activation = "relu"
init = "glorot"   # scikit-learn's initial weights: smaller than He's where inputs are many
optimizer = "momentum"
batch_size = 32
max_epochs = 150

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


def data_stem(source: str) -> str:
    """A data set's name or a CSV file's stem, as names allow: letters, digits, '_', '.', '-'
    (the default sweep file is ``sweeps/<stem>.toml``)."""
    stem = Path(source).stem if source.endswith(".csv") else source
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-_.") or "data"


def study_name(source: str) -> str:
    """The study's name for a data set: ``<stem>-regularisation``."""
    return f"{data_stem(source)}-regularisation"


def sweep_text(
    source: str, target: str | None = None, task: str | None = None, file: str = "sweep.toml"
) -> str:
    """The sweep file for ``source`` (a bundled data set's name, or a CSV file's path with its
    ``target`` column and ``task``). Raises ValueError naming what is wrong and what is
    allowed when the data cannot be loaded as asked."""
    if source.endswith(".csv") or Path(source).is_file():
        if task is None:
            raise ValueError("a CSV needs --task classification or --task regression")
        dataset = data.load("csv", path=source, target=target, task=task)
        quoted = {k: json.dumps(v) for k, v in (("path", source), ("target", target))}
        section = f'name = "csv"\npath = {quoted["path"]}\ntarget = {quoted["target"]}\n'
        section += f'task = "{task}"\n'
    elif source in data.NAMES and source != "csv":
        dataset = data.load(source)
        section = f'name = "{source}"\n'
    else:
        bundled = ", ".join(n for n in data.NAMES if n != "csv")
        raise ValueError(f"data {source!r}: not a CSV file nor a bundled data set ({bundled})")
    rows = sum(dataset.sizes().values())
    return TEMPLATE.format(
        what=f"{Path(source).name} ({rows} rows, {dataset.n_features} features, {dataset.task})",
        file=file,
        minutes="a minute" if rows < 1000 else "a few minutes",
        name=study_name(source),
        metric="val_accuracy" if dataset.task == "classification" else "val_loss",
        data=section,
    )
