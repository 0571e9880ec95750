"""The docs say what the code does: the sweep-file reference is generated from the models and
the network's table of hyperparameters, and the README is a guide without dated measurements."""

import re
from pathlib import Path

import pytest

from docs.generate import PAGE, render

ROOT = Path(__file__).resolve().parents[1]


def test_the_sweep_file_reference_is_what_the_code_generates():
    page = PAGE.read_text()
    assert render(page) == page, "docs/sweep-file.md is stale: run `make docs`"


@pytest.mark.parametrize("section", ["study", "data", "sampler", "pruner", "tracking"])
def test_every_key_of_every_section_is_in_the_reference(section):
    from pipeline.config import SweepConfig

    page = PAGE.read_text()
    model = SweepConfig.model_fields[section].annotation
    missing = [k for k in model.model_fields if f"`{section}.{k}`" not in page]
    assert not missing, f"[{section}] keys missing from docs/sweep-file.md: {missing}"


def test_every_hyperparameter_and_search_key_is_in_the_reference():
    from pipeline.config import SEARCHABLE_KEYS, SweepConfig
    from pipeline.config._space import CategoricalParam, FloatParam, IntParam
    from pipeline.core import HYPERPARAMETERS

    page = PAGE.read_text()
    keys = [f.name for f in HYPERPARAMETERS if f.name != "task"] + list(SEARCHABLE_KEYS)
    keys += list(SweepConfig.model_fields) + ["type", "low", "high", "log", "step", "choices"]
    for model in (FloatParam, IntParam, CategoricalParam):
        keys += list(model.model_fields)
    missing = sorted({k for k in keys if f"`{k}`" not in page})
    assert not missing, f"keys missing from docs/sweep-file.md: {missing}"


def test_the_readme_is_a_guide_of_about_250_lines_without_dated_measurements():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 280
    assert "make sweep" in readme and "make test" in readme
    assert not re.findall(r"\b20\d\d-\d\d-\d\d\b", readme), "dated figures go to the results log"
    for page in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / page).exists(), f"README links to a missing {page}"
