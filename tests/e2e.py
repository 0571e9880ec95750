"""Helpers for the end-to-end tests: run the real CLI in a folder, read the real stores."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
from mlflow import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from benchmarks.loopback import child_env as env
from benchmarks.loopback import free_ports, head_ready, start_head, wait_for

__all__ = ["env", "free_ports", "head_ready", "start_head", "wait_for"]

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sweeps" / "smoke.toml"


def long_sweep(
    folder: Path, max_epochs: int = 10_000_000, name: str = "long", n_trials: int = 4
) -> Path:
    """Four trials of the smoke sweep's network that run until they are stopped or killed (by
    default; a re-run passes ``--set fixed.max_epochs=30`` to finish them): no early stopping,
    no pruning, and a stop request noticed every 50 epochs."""
    path = folder / f"{name}.toml"
    path.write_text(
        f"""
[study]
name = "{name}"
n_trials = {n_trials}
n_jobs = 2
seed = 0

[data]
name = "sine"
seed = 1

[fixed]
hidden = [16, 16]
lr = 0.05
max_epochs = {max_epochs}

[search]
keep_prob = {{ type = "float", low = 0.5, high = 1.0 }}
weight_decay = {{ type = "float", low = 1e-5, high = 1e-1, log = true }}

[pruner]
name = "none"
report_every = 50
"""
    )
    return path


def cli_in_process(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m pipeline ARGS`` in ``cwd``, run in this process (as fast as a function call;
    the command line is the same code)."""
    import contextlib
    import io

    from pipeline import cli

    out, err = io.StringIO(), io.StringIO()
    here, uri = os.getcwd(), os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(list(args))
    finally:
        os.chdir(here)
        if uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = uri
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


def sweep_in_process(folder: Path, sweep_file: Path, *overrides: str) -> tuple:
    """A sweep of ``sweep_file`` with ``--set`` ``overrides``, run in this process into stores
    in ``folder``: its config, the store's URI, the summary and what it printed."""
    import io

    from rich.console import Console

    from pipeline.config import load_sweep, parse_override
    from pipeline.search import run_sweep

    cfg = load_sweep(sweep_file, [parse_override(o) for o in overrides])
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    out = io.StringIO()
    summary = run_sweep(
        cfg,
        storage=str(folder / "optuna.journal"),
        tracking_uri=uri,
        console=Console(file=out, width=200),
    )
    return cfg, uri, summary, out.getvalue()


def sweep(
    folder: Path, *args: str, sweep_file: Path = SMOKE, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m pipeline sweep`` in ``folder``, whose ``mlruns/`` then holds both stores."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "sweep", str(sweep_file), *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(),
    )


def start_sweep(
    folder: Path, *args: str, sweep_file: Path = SMOKE, new_session: bool = False
) -> subprocess.Popen:
    """The sweep, its output (both streams) in ``stdout``; with ``new_session``, in a process
    group of its own, as a scheduler starts a job."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "sweep", str(sweep_file), *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(),
        start_new_session=new_session,
    )


def study(folder: Path, name: str = "smoke") -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(folder / "mlruns" / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def client(folder: Path) -> MlflowClient:
    return MlflowClient(uri_of(folder))


def runs(folder: Path, name: str = "smoke") -> tuple[object, list]:
    """(parent run, child runs) of a study's experiment."""
    c = client(folder)
    experiment = c.get_experiment_by_name(name)
    found = c.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in found if r.data.tags.get("pipeline.role") == "study"]
    children = [r for r in found if r.data.tags.get("pipeline.role") == "trial"]
    assert len(parents) == 1, [p.info.run_name for p in parents]
    return parents[0], children


def child_pids(parent_pid: int, fragment: bytes, unless: bytes = b"\0\0") -> list[int]:
    """The child processes of ``parent_pid`` whose command line holds ``fragment`` (and not
    ``unless``)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent_pid and fragment in cmdline and unless not in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def worker_pids(parent_pid: int) -> list[int]:
    """The loky worker processes started by a sweep."""
    return child_pids(parent_pid, b"loky", unless=b"resource_tracker")


def running_trials(folder: Path, name: str = "smoke") -> int:
    try:
        s = study(folder, name)
    except Exception:  # not created yet
        return 0
    return sum(t.state == optuna.trial.TrialState.RUNNING for t in s.get_trials(deepcopy=False))


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    os.kill(pid, sig)


@contextlib.contextmanager
def ui_server(folder: Path) -> Iterator[tuple[str, Path]]:
    """``python -m pipeline ui`` over ``folder``'s store on a free loopback port, answering its
    REST API: yields (base URL, the file its output goes to); stopped on exit."""
    (port,) = free_ports(1)
    base = f"http://127.0.0.1:{port}"
    output = folder / f"ui-{port}.log"

    def answers() -> bool:  # it says so once its links are printed
        return output.exists() and "ready on" in output.read_text()

    with open(output, "w") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline",
                "ui",
                "--port",
                str(port),
                "--tracking-uri",
                uri_of(folder),
            ],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env(),
            start_new_session=True,
        )
        try:
            wait_for(answers, timeout=120, what="the MLflow UI to answer")
            yield base, output
        finally:
            stop_group(server)


def stop_group(process: subprocess.Popen, timeout: float = 120) -> None:
    """SIGTERM to ``process``'s group (a session of its own); SIGKILL if it is still there
    after ``timeout`` (a loaded machine may take its time: what is tested is elsewhere)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def uri_of(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"


def read_link(output: Path, study_name: str) -> str:
    """The link ``python -m pipeline ui`` printed for a study."""
    for line in output.read_text().splitlines():
        if line.strip().startswith(f"{study_name}: http"):
            return line.split(": ", 1)[1].strip()
    raise AssertionError(f"no link for {study_name!r} in:\n{output.read_text()}")
