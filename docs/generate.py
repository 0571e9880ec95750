"""Regenerate the tables of docs/sweep-file.md from the code they describe: the sweep file's
pydantic models (each field's docstring), the network's table of hyperparameters, the data sets
and their options, the samplers and pruners. ``make docs`` runs it; a test fails when the page
and the code disagree, so the reference cannot drift.

    python docs/generate.py          # rewrite the generated parts of docs/sweep-file.md
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

PAGE = Path(__file__).with_name("sweep-file.md")
MARK = re.compile(r"(<!-- generated: (\w+) -->\n).*?(<!-- end generated -->)", re.S)


def _text(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _value(value: Any) -> str:
    """A value as TOML writes it."""
    return f"`{value!r}`".replace("'", '"').replace("True", "true").replace("False", "false")


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return "(computed)" if field.default_factory.__name__ == "<lambda>" else "{}"
    return "none" if field.default is None else _value(field.default)


def _model_table(model: Any, prefix: str) -> str:
    rows = ["| key | default | what it is |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        rows.append(f"| `{prefix}{name}` | {_default(field)} | {_text(field.description)} |")
    return "\n".join(rows)


def _hyperparameters() -> str:
    from pipeline.config import sweep_value
    from pipeline.core import HYPERPARAMETERS

    rows = ["| key | default | allowed | what it is | off |", "|---|---|---|---|---|"]
    for f in HYPERPARAMETERS:
        if f.name == "task":  # the data set decides
            continue
        default = sweep_value(f.name, f.default)
        off = _value(f.metadata["off"]) if "off" in f.metadata else ""
        rows.append(
            f"| `{f.name}` | {_value(default)} | {_text(f.metadata['constraint'].allowed)} "
            f"| {_text(f.metadata['doc'])} | {off} |"
        )
    rows.append(
        "| `width`, `depth` | | integers >= 1 | build `hidden` = [width] * depth; either may "
        "be fixed or searched (not beside `hidden`) | |"
    )
    return "\n".join(rows)


def _data_sets() -> str:
    from pipeline.core import data

    rows = ["| name | task | options (default) |", "|---|---|---|"]
    for name in data.NAMES:
        task = data.task(name) if name != "csv" else "the `task` option"
        options = ", ".join(f"`{k}` = {_value(v)}" for k, v in data.options(name).items())
        rows.append(f"| `{name}` | {task} | {options} |")
    return "\n".join(rows)


def sections() -> dict[str, str]:
    """Each generated part of the page, by its marker's name."""
    from pipeline.config import PRUNERS, SAMPLERS
    from pipeline.config._space import CategoricalParam, FloatParam, IntParam
    from pipeline.config._sweep_file import (
        DataSection,
        PrunerSection,
        SamplerSection,
        StudySection,
        SweepConfig,
        TrackingSection,
    )

    return {
        "tables": _model_table(SweepConfig, ""),
        "study": _model_table(StudySection, "study."),
        "data": _model_table(DataSection, "data."),
        "data_sets": _data_sets(),
        "hyperparameters": _hyperparameters(),
        "float": _model_table(FloatParam, ""),
        "int": _model_table(IntParam, ""),
        "categorical": _model_table(CategoricalParam, ""),
        "sampler": _model_table(SamplerSection, "sampler.")
        + f"\n\nSamplers: {', '.join(f'`{s}`' for s in SAMPLERS)}.",
        "pruner": _model_table(PrunerSection, "pruner.")
        + f"\n\nPruners: {', '.join(f'`{p}`' for p in PRUNERS)}.",
        "tracking": _model_table(TrackingSection, "tracking."),
    }


def render(page: str) -> str:
    """``page`` with every generated part replaced by what the code says now."""
    parts = sections()

    def fill(match: re.Match[str]) -> str:
        return f"{match.group(1)}{parts[match.group(2)]}\n{match.group(3)}"

    return MARK.sub(fill, page)


if __name__ == "__main__":
    before = PAGE.read_text()
    after = render(before)
    PAGE.write_text(after)
    print(f"{PAGE}: {'updated' if after != before else 'up to date'}", file=sys.stderr)
