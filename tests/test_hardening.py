"""Bad input gets exit status 2 and one line naming the file or option, the key, the value and
what is allowed, within seconds, with nothing written; names from a store never become paths;
errors are never reported as success."""

import os
import time
from pathlib import Path

import pytest
from e2e import SMOKE
from e2e import cli_in_process as _cli

from pipeline.config import ConfigError, load_sweep, mask_credentials, parse_override

GOOD = SMOKE.read_text()


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
        (["--set", "=5"], "--set: '=5': expected KEY=VALUE"),
        (["--set", "study..name=x"], "--set: 'study..name=x': expected KEY=VALUE"),
        (["--set", "search.keep_prob.step=0.3"], "search.keep_prob: step 0.3 does not divide"),
        (
            ["--set", "search.patience.step=7"],
            "search.patience: step 7 does not divide",
        ),
        (["--n-jobs", "10000"], "study.n_jobs = 10000: at most"),
        (["--set", "study.folds=1"], "study.folds = 1: Input should be greater than or equal to 2"),
        (
            [
                *("--set", "data.name=moons", "--set", "data.n_samples=20"),
                *("--set", "study.folds=9", "--set", "pruner.n_warmup_steps=0"),
            ],
            "study.folds = 9: more folds than the 7 members of the smallest class in the "
            "training and validation data of 'moons'; allowed: 2..7",
        ),
        (
            ["--set", "study.folds=3"],  # the smoke sweep's pruner warms up for 10 epochs
            "pruner.n_warmup_steps = 10: with study.folds = 3 the pruner's step is the number "
            "of folds done (1..3), not the epoch; allowed: at most 2",
        ),
        (["--set", "study.repeats=0"], "study.repeats = 0: Input should be greater than or equal"),
        (["--set", "study.top_k=0"], "study.top_k = 0: Input should be greater than or equal"),
        (["--set", "study.select=median"], "study.select = 'median': Input should be 'mean' or"),
        (
            ["--storage", "postgresql://user:secret@127.0.0.1:1/optuna"],
            "postgresql://user:***@127.0.0.1:1/optuna",
        ),
        (["--tracking-uri", "http://127.0.0.1:9"], "tracking uri = 'http://127.0.0.1:9'"),
        (["--tracking-uri", "file:///tmp/nowhere"], "unless MLFLOW_ALLOW_FILE_STORE=true"),
    ],
)
def test_bad_input_is_one_line_with_status_2_and_nothing_written(tmp_path, args, expected):
    line = _refused(tmp_path, *args)
    assert expected in line
    assert "secret" not in line


def test_a_password_is_never_echoed(tmp_path):
    line = _refused(tmp_path, "--storage", "postgresql://user:secret@127.0.0.1:1/optuna")
    assert "secret" not in line and ("cannot" in line or "not installed" in line)
    assert mask_credentials("mysql://a:b@h/db") == "mysql://a:***@h/db"
    assert mask_credentials("mlruns/optuna.journal") == "mlruns/optuna.journal"


def test_a_storage_under_a_regular_file_or_in_a_read_only_folder_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    path = tmp_path / "sweep.toml"
    path.write_text(GOOD)
    result = _cli(tmp_path, "sweep", str(path), "--storage", str(tmp_path / "file" / "j.journal"))
    assert result.returncode == 2 and "storage" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "sweep.toml"]


def test_a_read_only_store_is_refused_at_once(tmp_path):
    for name, make in (
        ("ro-folder", lambda d: None),
        ("ro-db", lambda d: (d / "mlflow.db").touch()),
    ):
        folder = tmp_path / name
        folder.mkdir()
        make(folder)
        for path in folder.iterdir():
            path.chmod(0o444)
        folder.chmod(0o555)
        path = tmp_path / "sweep.toml"
        path.write_text(GOOD)
        started = time.monotonic()
        result = _cli(
            tmp_path, "sweep", str(path), "--tracking-uri", f"sqlite:///{folder}/mlflow.db"
        )
        assert time.monotonic() - started < 20
        assert result.returncode == 2 and "read-only" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 2
        assert not (tmp_path / "mlruns").exists()


def test_a_sweep_file_that_is_a_folder_or_not_utf8_is_one_line(tmp_path):
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        load_sweep(folder)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_sweep(binary)


def test_a_table_with_one_class_or_a_column_name_twice_is_refused_by_the_sweep(tmp_path):
    one_class = tmp_path / "one.csv"
    one_class.write_text("a,b,y\n" + "".join(f"{i},{i * 2},1\n" for i in range(30)))
    twice = tmp_path / "twice.csv"
    twice.write_text("a,a,y\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(30)))
    for path, expected in ((one_class, "one value (1)"), (twice, "['a'] appear more than once")):
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


def test_names_from_a_store_never_leave_the_report_folder(tmp_path):
    """A received store whose experiment is named like a path: the report stays in --out."""
    from mlflow import MlflowClient

    from pipeline.analysis import write_reports
    from pipeline.names import ROLE, ROLE_STUDY

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    client = MlflowClient(uri)
    for name in ("../../../x", ".."):
        experiment = client.create_experiment(name)
        client.create_run(experiment, run_name=name, tags={ROLE: ROLE_STUDY})
    out = tmp_path / "deep" / "er" / "reports"
    pages = write_reports(["../../../x", ".."], uri, out)
    for page in pages:
        assert page.resolve().is_relative_to(out.resolve()), page
    outside = {p for p in tmp_path.rglob("*") if not p.resolve().is_relative_to(out.resolve())}
    assert {p.name for p in outside} <= {"store", "mlflow.db", "deep", "er", "reports"}


def _in_process_sweep(tmp_path: Path, *overrides: str, tracking: bool = False) -> tuple[int, str]:
    """``python -m pipeline sweep`` in this process (one worker runs in-process)."""
    import contextlib
    import io

    from pipeline import cli

    path = tmp_path / "sweep.toml"
    path.write_text(GOOD)
    args = ["sweep", str(path), "--n-jobs", "1", "--storage", str(tmp_path / "optuna.journal")]
    args += (
        ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"] if tracking else ["--no-tracking"]
    )
    for o in overrides:
        args += ["--set", o]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = cli.main(args)
    return status, out.getvalue()


def test_an_error_in_a_worker_is_printed_once_and_ends_non_zero(tmp_path, monkeypatch):
    from pipeline.search import _worker as worker

    def broken(*args, **kwargs):
        raise RuntimeError("boom in the machinery")

    monkeypatch.setattr(worker, "run_trial", broken)
    status, output = _in_process_sweep(tmp_path, tracking=True)
    assert status == 1
    assert output.count("boom in the machinery") == 1, output
    assert "a worker died" not in output
    from pipeline.config import load_sweep as load
    from pipeline.search import load_study

    study = load_study(load(SMOKE), str(tmp_path / "optuna.journal"))
    (started,) = [t for t in study.trials if t.state.name != "WAITING"]  # no retries
    assert started.state.name == "FAIL"
    assert "boom" in started.user_attrs["fail_reason"]  # failed, not "interrupted"
    assert not started.user_attrs.get("interrupted")
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs(
        [client.get_experiment_by_name("smoke").experiment_id], "tags.trial = '0'"
    )
    assert run.info.status == "FAILED" and "boom" in run.data.tags["fail_reason"]


def test_a_sweep_where_no_trial_completes_says_why_and_ends_non_zero(tmp_path):
    status, output = _in_process_sweep(
        tmp_path, "data.name='diabetes'", "fixed.lr=1e6", "study.n_trials=3"
    )
    assert status == 1
    assert "3 trial(s) failed: DivergenceError: training diverged" in output
    assert "no trial completed" in output and "make report" not in output


def test_a_second_sweep_of_a_running_study_is_refused(tmp_path):
    from pipeline.search._study import hold_study

    path = tmp_path / "sweep.toml"
    path.write_text(GOOD)
    journal = tmp_path / "mlruns" / "optuna.journal"
    with hold_study(str(journal), "smoke"):
        result = _cli(tmp_path, "sweep", str(path), "--storage", str(journal), "--no-tracking")
    assert result.returncode == 2
    assert f"study 'smoke' is being run by process {os.getpid()} on host" in result.stderr
    assert not journal.exists()  # refused before the study was opened


def test_a_store_file_that_is_not_a_store_is_refused(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00not a store at all\n" * 10)
    path = tmp_path / "sweep.toml"
    path.write_text(GOOD)
    for args, expected in (
        (("--storage", str(garbage)), "is not an Optuna journal"),
        (("--tracking-uri", f"sqlite:///{garbage}"), "is not a readable SQLite database"),
        (("--storage", f"sqlite:///{garbage}"), "is not a readable SQLite database"),
    ):
        result = _cli(tmp_path, "sweep", str(path), *args)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.bin", "sweep.toml"]


def test_report_ui_and_figures_refuse_an_unusable_store_or_folder_or_port(tmp_path):
    import socket

    started = time.monotonic()
    for command in (["report"], ["figures", "smoke", "1"], ["ui", "--port", "5999"]):
        result = _cli(tmp_path, *command, "--tracking-uri", "http://127.0.0.1:9")
        assert result.returncode == 2 and "no MLflow server answers" in result.stderr, command
    assert time.monotonic() - started < 20  # not MLflow's minutes of retries
    (tmp_path / "afile").write_text("")
    store = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    result = _cli(
        tmp_path, "report", "x", "--tracking-uri", store, "--out", str(tmp_path / "afile")
    )
    assert result.returncode == 2 and "error:" in result.stderr and "Traceback" not in result.stderr
    assert _cli(tmp_path, "ui", "--port", "70000").returncode == 2
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _cli(tmp_path, "ui", "--port", str(port), "--tracking-uri", store)
    assert result.returncode == 2 and "already in use" in result.stderr
