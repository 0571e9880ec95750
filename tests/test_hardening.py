"""Bad input gets exit status 2 and one line naming the file or option, the key, the value and
what is allowed, within seconds, with nothing written; names from a store never become paths;
errors are never reported as success."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e import SMOKE, env

from pipeline.config import ConfigError, load_sweep, mask_credentials, parse_override

GOOD = SMOKE.read_text()


def _cli(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(),
    )


def _refused(tmp_path: Path, *args: str, sweep_text: str = GOOD) -> str:
    """Run a sweep that must be refused: status 2, one line after the heading, nothing written,
    within seconds. Returns that line."""
    path = tmp_path / "sweep.toml"
    path.write_text(sweep_text)
    started = time.monotonic()
    result = _cli(tmp_path, "sweep", str(path), *args)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, result.stderr  # "error: ..." and the one problem
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.toml"], "something was written"
    assert elapsed < 20, f"took {elapsed:.0f} s"
    return lines[1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "study.name=.."], "study.name = '..'"),
        (["--set", "study.name=.hidden"], "study.name = '.hidden'"),
        (["--set", "sampler.n_startup_trials=x"], "sampler = 'tpe' with options"),
        (["--set", "pruner.n_warmup_steps='x'"], "pruner = 'median' with options"),
        (["--set", "search.weight_decay.high=inf"], "search.weight_decay.high = inf"),
        (["--set", "fixed.eps=inf"], "fixed.eps = inf: must be a finite number > 0"),
        (["--set", "search.eps={type='float',low=1e-8,high=inf}"], "search.eps.high = inf"),
        (["--set", "data.n_val=abc"], "data.n_val = 'abc': must be an integer >= 1"),
        (["--set", "data.n_val=0"], "data.n_val = 0: must be an integer >= 1"),
        (["--set", "data.noise=-1"], "data.noise = -1: must be a finite number >= 0"),
        (["--set", "=5"], "--set '=5': expected KEY=VALUE"),
        (["--set", "study..name=x"], "--set 'study..name=x': expected KEY=VALUE"),
        (["--set", "search.keep_prob.step=0.3"], "search.keep_prob: step 0.3 does not divide"),
        (
            ["--set", "search.patience.step=7"],
            "search.patience: step 7 does not divide",
        ),
        (["--n-jobs", "10000"], "study.n_jobs = 10000: at most"),
        (
            ["--storage", "postgresql://user:secret@127.0.0.1:1/optuna"],
            "postgresql://user:***@127.0.0.1:1/optuna",
        ),
        (["--tracking-uri", "http://127.0.0.1:9"], "tracking uri = 'http://127.0.0.1:9'"),
    ],
)
def test_bad_input_is_one_line_with_status_2_and_nothing_written(tmp_path, args, expected):
    line = _refused(tmp_path, *args)
    assert expected in line
    assert "secret" not in line


def test_a_password_is_never_echoed(tmp_path):
    line = _refused(tmp_path, "--storage", "postgresql://user:secret@127.0.0.1:1/optuna")
    assert "secret" not in line and "cannot" in line
    assert mask_credentials("mysql://a:b@h/db") == "mysql://a:***@h/db"
    assert mask_credentials("mlruns/optuna.journal") == "mlruns/optuna.journal"


def test_a_storage_under_a_regular_file_or_in_a_read_only_folder_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    path = tmp_path / "sweep.toml"
    path.write_text(GOOD)
    result = _cli(tmp_path, "sweep", str(path), "--storage", str(tmp_path / "file" / "j.journal"))
    assert result.returncode == 2 and "storage" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "sweep.toml"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_a_read_only_store_is_refused_at_once(tmp_path):
    store = tmp_path / "ro"
    store.mkdir(mode=0o500)
    line = _refused(tmp_path, "--tracking-uri", f"sqlite:///{store}/mlflow.db")
    assert "read-only" in line or "not writable" in line


def test_a_sweep_file_that_is_a_folder_or_not_utf8_is_one_line(tmp_path):
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        load_sweep(folder)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_sweep(binary)


def test_a_csv_with_one_class_or_infinite_values_is_refused(tmp_path):
    one_class = tmp_path / "one.csv"
    one_class.write_text("a,b,y\n" + "".join(f"{i},{i * 2},1\n" for i in range(30)))
    infinite = tmp_path / "inf.csv"
    infinite.write_text("a,b,y\n" + "".join(f"{i},{'inf' if i == 3 else i},{i % 2}\n" for i in range(30)))
    for path, expected in ((one_class, "1 class"), (infinite, "infinite")):
        text = GOOD.replace(
            'name = "sine"\nseed = 1',
            f'name = "csv"\npath = "{path}"\ntarget = "y"\ntask = "classification"',
        )
        cfg_path = tmp_path / "csv.toml"
        cfg_path.write_text(text)
        result = _cli(tmp_path, "sweep", str(cfg_path), "--n-trials", "1")
        assert result.returncode == 2, result.stdout + result.stderr
        assert expected in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "mlruns").exists()


def test_overrides_with_an_empty_key_part_are_refused():
    for text in ("=5", ".a=1", "a..b=1", "a.=1"):
        with pytest.raises(ConfigError, match="expected KEY=VALUE"):
            parse_override(text)
