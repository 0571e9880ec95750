"""Reading a sweep file: TOML, ``--set`` overrides, the models' validation and the cross checks,
every problem reported as ``FILE: KEY = VALUE: what is allowed``."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from pipeline.config._checks import cross_checks
from pipeline.config._sweep_file import ConfigError, SweepConfig


def _format_pydantic(err: ValidationError, prefix: str = "") -> list[str]:
    problems = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"] if not str(p).startswith(("function-", "tagged-union"))]
        # the discriminated union adds the chosen type ('float', ...) to the path; drop it
        loc = [p for p in loc if p not in ("float", "int", "categorical", "FloatParam")]
        key = prefix + ".".join(loc)
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key")
        elif e["type"] == "missing":
            problems.append(f"{key}: missing (required)")
        elif "input" in e and not isinstance(e["input"], dict):
            problems.append(f"{key} = {e['input']!r}: {message}")
        else:
            problems.append(f"{key}: {message}")
    return problems


def parse_override(text: str) -> tuple[list[str], Any]:
    """``KEY=VALUE`` from ``--set``: a dotted key into the sweep file and a TOML value
    (a bare word that is not valid TOML is taken as a string)."""
    if "=" not in text:
        raise ConfigError("--set", [f"{text!r}: expected KEY=VALUE, e.g. fixed.max_epochs=200"])
    key, raw = (part.strip() for part in text.split("=", 1))
    if not all(key.split(".")):
        raise ConfigError(
            "--set", [f"{text!r}: expected KEY=VALUE with a dotted key, e.g. fixed.max_epochs=200"]
        )
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def load_sweep(
    path: str | Path, overrides: list[tuple[list[str], Any]] | None = None
) -> SweepConfig:
    """Read, override and validate a sweep file; raises :class:`ConfigError`."""
    source = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(source, ["no such file"]) from None
    except IsADirectoryError:
        raise ConfigError(source, ["is a folder, not a sweep file"]) from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            source, [f"not UTF-8 text (byte {err.start}): not a sweep file"]
        ) from None
    except OSError as err:
        raise ConfigError(source, [f"cannot be read: {err.strerror}"]) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(source, [f"not valid TOML: {err}"]) from None
    for keys, value in overrides or []:
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(source, [f"--set {'.'.join(keys)}: {k} is not a table"])
        node[keys[-1]] = value
    try:
        cfg = SweepConfig(**raw, source=source)
    except ValidationError as err:
        raise ConfigError(source, _format_pydantic(err)) from None
    except TypeError as err:  # e.g. a top-level key that is not a table
        raise ConfigError(source, [str(err)]) from None
    problems = cross_checks(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg
