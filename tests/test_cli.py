"""The command line in this process, the store's location rules and the benchmark's timer."""

import pytest

from benchmarks import common as bench
from pipeline import cli
from pipeline.tracking import _store as store


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in (
        "sweep",
        "check",
        "studies",
        "ui",
        "report",
        "figures",
        "head",
        "storage-proxy",
    ):
        assert command in out


def test_a_missing_sweep_file_is_status_2_with_its_name(tmp_path, capsys):
    missing = tmp_path / "nope.toml"
    assert cli.main(["sweep", str(missing)]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_tracking_uri_is_the_flag_then_the_environment_then_mlruns(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert store.tracking_uri() == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert store.tracking_uri() == "http://127.0.0.1:1"
    assert store.tracking_uri("sqlite:///x.db") == "sqlite:///x.db"


def test_the_benchmark_keeps_each_candidates_best_time():
    calls = []
    times = bench.best_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert calls == ["a", "b"] * 3  # interleaved rounds
    assert set(times) == {"a", "b"} and all(0 <= t < 1 for t in times.values())


def test_the_benchmark_compares_the_same_trials_in_every_run():
    cfg = bench.sweep_config(bench.DEFAULT_SWEEP, "b", study={"n_trials": 3})
    first, again = bench.same_trials(cfg, 5), bench.same_trials(cfg, 5)
    assert first == again and len(first) == 5 and set(first[0]) == set(cfg.search)
    for params in first:
        for key, value in params.items():
            p = cfg.search[key]
            assert p.low <= value <= p.high
    assert cfg.study.name == "b" and cfg.study.n_trials == 3


def test_read_commands_never_create_a_store(tmp_path):
    from e2e import cli_in_process

    store = tmp_path / "nowhere.db"
    for command in (["report"], ["figures", "smoke", "1"]):
        done = cli_in_process(tmp_path, *command, "--tracking-uri", f"sqlite:///{store}")
        assert done.returncode == 2, command
        assert "no MLflow store there yet" in done.stderr and len(done.stderr.splitlines()) == 1
        assert not store.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_version_has_one_source():
    import subprocess
    import sys
    from importlib.metadata import version
    from pathlib import Path

    import pipeline

    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["python", "-m", "pipeline", pipeline.__version__]
    assert version("regsweep") == pipeline.__version__  # the installed distribution's
    script = Path(sys.executable).with_name("regsweep")  # the console script, the same command
    same = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert same.stdout.split() == ["regsweep", pipeline.__version__]


def test_check_prints_the_resolved_sweep_and_writes_nothing(tmp_path):
    from e2e import SMOKE, cli_in_process

    done = cli_in_process(tmp_path, "check", str(SMOKE), "--set", "study.n_trials=5")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{SMOKE}: valid" and "smoke: 5 trials" in lines[1]
    for key in ("keep_prob", "weight_decay", "l1", "patience"):
        assert any(line.startswith(f"search    {key}: ") for line in lines), key
    assert any(line.startswith("baseline  unregularised: keep_prob = 1.0") for line in lines)
    assert "nothing was written" in lines[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    bad = cli_in_process(tmp_path, "check", str(SMOKE), "--set", "search.keep_prob.low=2")
    assert bad.returncode == 2 and "search.keep_prob: low (2.0) must be < high" in bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_optional_part_without_its_extra_says_which_to_install():
    from pipeline.config import missing_extra

    assert missing_extra("json", "cluster") is None  # installed: nothing to say
    why = missing_extra("no_such_module_here", "cluster")
    assert why == "needs the cluster extra, not installed here: pip install 'regsweep[cluster]'"


def test_every_subcommand_takes_verbose_and_quiet(tmp_path):
    from e2e import SMOKE, cli_in_process

    parser = cli.build_parser()
    for name, command in parser._subparsers._group_actions[0].choices.items():
        flags = {o for a in command._actions for o in a.option_strings}
        assert {"-v", "--verbose", "-q", "--quiet"} <= flags, name
    loud = cli_in_process(tmp_path, "check", str(SMOKE))
    quiet = cli_in_process(tmp_path, "check", "-q", str(SMOKE))
    assert loud.returncode == quiet.returncode == 0 and loud.stdout and quiet.stdout == ""
    bad = cli_in_process(tmp_path, "check", "-q", str(SMOKE), "--set", "study.n_trials=0")
    assert bad.returncode == 2 and "study.n_trials = 0" in bad.stderr  # errors still said


def test_verbose_lets_the_libraries_speak():
    import subprocess
    import sys

    from e2e import SMOKE

    def said(*flags: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "check", *flags, str(SMOKE)],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stderr

    assert "A new study created" in said("-v")  # Optuna's own log line
    assert "A new study created" not in said()


def test_init_writes_a_checked_sweep_file_for_a_csv_and_refuses_bad_input(tmp_path):
    """``init`` for a user's CSV: a sweep file that `check` accepts, with the data section
    filled in; bad input is one line, exit status 2, and nothing is written."""
    import pandas as pd
    from e2e import cli_in_process

    from pipeline.config import load_sweep

    frame = pd.DataFrame({"a": range(60), "b": [v % 7 for v in range(60)]})
    frame["kind"] = ["x" if v % 2 else "y" for v in range(60)]
    frame.to_csv(tmp_path / "my data.csv", index=False)
    done = cli_in_process(
        tmp_path, "init", "my data.csv", "--target", "kind", "--task", "classification"
    )
    assert done.returncode == 0, done.stderr
    written = tmp_path / "sweeps" / "my-data.toml"
    cfg = load_sweep(written)
    assert cfg.data.name == "csv" and cfg.study.metric == "val_accuracy"
    assert cfg.study.deliver == "ensemble" and cfg.study.folds == 5
    assert cli_in_process(tmp_path, "check", str(written)).returncode == 0
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for args, says in (
        (
            ("my data.csv", "--target", "nope", "--task", "classification", "--out", "n.toml"),
            "no target column 'nope'; columns are ['a', 'b', 'kind']",
        ),
        (("my data.csv", "--out", "n.toml"), "a table needs --target COLUMN"),
        (("nothing", "--out", "n.toml"), "nor a bundled data set (sine, digits"),
        (("my data.csv", "--target", "kind", "--task", "classification"), "exists: --force"),
    ):
        refused = cli_in_process(tmp_path, "init", *args)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_init_for_a_bundled_set_selects_on_its_own_metric(tmp_path):
    from e2e import cli_in_process

    from pipeline.config import load_sweep

    assert cli_in_process(tmp_path, "init", "diabetes", "--out", "d.toml").returncode == 0
    cfg = load_sweep(tmp_path / "d.toml")
    assert cfg.data.name == "diabetes" and cfg.study.metric == "val_loss"
    assert cfg.study.name == "diabetes-regularisation"


@pytest.mark.parametrize(
    ("command", "address"),
    [
        (["head", "--dashboard-address", "0.0.0.0:8787"], "0.0.0.0:8787"),
        (["head", "--dashboard", "--dashboard-address", "10.1.2.3:80"], "10.1.2.3:80"),
        (["worker", "tcp://127.0.0.1:1", "--dashboard-address", "0.0.0.0:8788"], "0.0.0.0:8788"),
    ],
)
def test_dask_s_web_routes_beyond_loopback_are_refused_in_one_line(
    command, address, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert cli.main(command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"--dashboard-address {address}: Dask's web routes have no login" in err
    assert "ssh -L" in err and "127.0.0.1" in err
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


def test_a_worker_s_web_routes_are_bound_to_loopback_whatever_the_spelling():
    from pipeline.cluster import loopback_web, worker_command

    for given in (["--dashboard-address", ":8788"], ["--dashboard-address=8788"]):
        assert loopback_web(["--nworkers", "2", *given]) == [
            "--nworkers",
            "2",
            "--dashboard-address",
            "127.0.0.1:8788",
        ]
    assert loopback_web(["--nworkers", "2"]) == ["--nworkers", "2"]
    line = worker_command("tls://head:8786")
    assert line[line.index("--dashboard-address") + 1] == "127.0.0.1:0"
