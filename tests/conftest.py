"""Shared fixtures: the seed chapter's reference code, when shared/ lies beside the repo."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED_REFERENCE = ROOT.parent / "shared" / "seed" / "reference.py"


@pytest.fixture(scope="session")
def reference():
    """The chapter's code (``shared/seed/reference.py``), imported; skips when it is absent."""
    if not SEED_REFERENCE.is_file():
        pytest.skip(f"{SEED_REFERENCE} not present")
    spec = importlib.util.spec_from_file_location("seed_reference", SEED_REFERENCE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["seed_reference"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """A folder whose mlruns/ holds the smoke sweep's stores, and the sweep's output."""
    from e2e import sweep

    folder = tmp_path_factory.mktemp("smoke")
    result = sweep(folder)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder, result
