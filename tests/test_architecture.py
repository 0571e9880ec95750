"""The house rules, read from the source: subpackages by concept in layers, each imported
through its public face from outside; no import cycle; nothing imports the benchmarks; small
modules and functions."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"
# each package imports only its own layer and the ones below it
LAYERS = {
    "core": 0,
    "names": 1,
    "results": 1,
    "interrupts": 1,
    "quiet": 1,
    "config": 2,
    "tracking": 3,
    "analysis": 4,
    "search": 5,
    "cluster": 6,
    "cli": 7,
    "commands": 7,
    "__main__": 7,
    "__init__": 7,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (lazily)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {
    name: {m for m in _imports(path) if m in MODULES and m != name}
    for name, path in MODULES.items()
}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_nothing_in_the_package_imports_the_benchmarks_or_the_tests():
    for name, path in MODULES.items():
        outside = {m for m in _imports(path) if m.split(".")[0] in ("benchmarks", "tests")}
        assert not outside, f"{name} imports {outside}"


def test_there_is_no_import_cycle():
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            cycle = trail[trail.index(module) :] + [module]
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")
        if module in done:
            return
        for target in GRAPH[module]:
            # a package imports its own private modules to name them in its face
            if target.startswith(module + "."):
                continue
            visit(target, [*trail, module])
        done.add(module)

    for module in GRAPH:
        visit(module, [])


def test_packages_import_only_their_own_layer_and_those_below():
    for module, targets in GRAPH.items():
        here = _package(module)
        for target in targets:
            there = _package(target)
            if target == "pipeline" or here == "__init__":
                continue
            assert LAYERS[there] <= LAYERS[here], f"{module} ({here}) imports {target} ({there})"


def test_other_packages_come_in_through_the_public_face():
    for module, targets in GRAPH.items():
        here = _package(module)
        for target in targets:
            private = [p for p in target.split(".") if p.startswith("_") and p != "__init__"]
            if private and _package(target) != here:
                pytest.fail(f"{module} imports {target}: import its package's face instead")


def test_every_face_names_what_it_exports_and_those_names_exist():
    import importlib

    for name, path in MODULES.items():
        if path.name != "__init__.py" or name == "pipeline":
            continue
        face = importlib.import_module(name)
        assert face.__all__, name
        missing = [n for n in face.__all__ if not hasattr(face, n)]
        assert not missing, f"{name}.__all__ names {missing}, which it does not have"


def test_the_top_level_api_loads_its_names_on_first_use():
    import pipeline

    for name in pipeline.__all__:
        assert getattr(pipeline, name) is not None, name


@pytest.mark.parametrize("folder", ["pipeline", "benchmarks"])
def test_no_module_is_over_500_lines(folder):
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / folder).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert not long, f"modules over 500 lines: {long}"


def test_no_function_is_much_longer_than_60_lines():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > 65:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long, long


def test_importing_the_package_changes_no_global_state():
    """Logging levels, environment variables and matplotlib's backend are the commands' to
    set (pipeline.quiet), not an import's: a notebook importing the package keeps its own."""
    import subprocess
    import sys

    probe = """
import logging, os, json, matplotlib
# the libraries' own import-time settings are theirs: imported first, they are in "before"
import optuna, mlflow, sklearn.neural_network, pandas, distributed, rich, joblib
def state():
    names = ["optuna", "mlflow", "mlflow.store.db.utils"]
    return {"env": dict(os.environ), "backend": matplotlib.get_backend(),
            "levels": {n: logging.getLogger(n).level for n in names}}
before = state()
import pipeline, pipeline.core, pipeline.config, pipeline.tracking, pipeline.analysis
import pipeline.search, pipeline.cluster
from pipeline import MLP, analysis, load_best_model, run_sweep
print(json.dumps(state() == before))
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "true", done.stdout + done.stderr
