"""``python -m pipeline head``: the shared services of a sweep that reaches beyond one process
tree, started as child processes of this one and stopped together (Ctrl-C):

- the Dask scheduler, which worker machines join;
- Optuna's gRPC storage proxy (``python -m pipeline storage-proxy``) over one storage, by
  default a journal file in the head's folder (the proxy its only client), else an RDB such
  as PostgreSQL, so that every process reads and writes the study through one server;
- an MLflow tracking server with artifact proxying, so that histories, models and figures
  travel over HTTP and no machine needs the head's filesystem.

Every service binds to 127.0.0.1 unless ``--host`` says otherwise; another address is an
explicit choice and gets a warning (none of the three authenticates its clients by default).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import port_problem
from pipeline.interrupts import TerminateAsInterrupt
from pipeline.tracking import server_env

LOOPBACK = "127.0.0.1"
READY_TIMEOUT = 120.0  # seconds for a service to answer after it starts


class HeadError(Exception):
    """The services cannot start (a port in use): one line, nothing started."""


@dataclass(frozen=True)
class Service:
    name: str
    option: str  # the command-line option that sets its port
    port: int
    command: list[str]
    health: str | None = None  # an HTTP page that answers once it is ready; else a TCP connect


def services(
    host: str, scheduler_port: int, storage_port: int, mlflow_port: int, folder: Path, storage: str
) -> list[Service]:
    """The three services, their state under ``folder`` (the study's ``storage``, by default a
    journal file there: one proxy process is its only client)."""
    mlflow = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(mlflow_port)]
    mlflow += ["--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    mlflow += ["--artifacts-destination", str(folder / "artifacts")]
    return [
        Service(
            "Dask scheduler",
            "--scheduler-port",
            scheduler_port,
            [sys.executable, "-m", "dask", "scheduler", "--host", host, "--port"]
            + [str(scheduler_port), "--no-dashboard"],
        ),
        Service(
            "Optuna storage proxy",
            "--storage-port",
            storage_port,
            [sys.executable, "-m", "pipeline", "storage-proxy", storage, "--host", host]
            + ["--port", str(storage_port)],
        ),
        Service(
            "MLflow server",
            "--mlflow-port",
            mlflow_port,
            mlflow,
            health=f"http://{_connectable(host)}:{mlflow_port}/health",
        ),
    ]


def default_storage(folder: Path) -> str:
    """A journal file: behind the proxy it costs a fifth of SQLite's time a report (1.1 ms
    against 5.4) and a third a trial's ask, suggest and tell (26 ms against 79); on loopback
    that made the cluster path as fast as the local one, where SQLite left it at 0.8x."""
    return str(folder / "optuna.journal")


def binding_warning(host: str) -> str | None:
    """A warning for any address but the loopback one, or None."""
    if host in (LOOPBACK, "localhost", "::1"):
        return None
    return (
        f"warning: the services listen on {host}, not only on this machine: none of them "
        "authenticates its clients by default. On a shared network use Dask's TLS settings, "
        "MLflow's authentication (mlflow server --app-name basic-auth) and a firewall; see "
        "the README, 'Running on several machines'."
    )


def check_ports(host: str, wanted: list[Service]) -> None:
    """Refuse, before starting anything, a port that something else already listens on."""
    for service in wanted:
        if (why := port_problem(host, service.port)) is not None:
            raise HeadError(
                f"port {service.port} ({service.name}) cannot be used on {host}: {why}; "
                f"stop what holds it or choose another with {service.option}"
            )


# A Dask worker's event loop wakes every 20 ms to check its own health, every 100 ms to
# measure memory and every 10 ms to sample the running task's stack for its profiler; each
# wake-up takes the GIL from the trial, whose small networks spend most of their time in
# Python. Measured with one worker: 3.07 s a trial under Dask's defaults, 2.63 s with these,
# 2.67 s in a loky process. ``python -m pipeline worker`` starts workers with them, and the
# head its scheduler (whose health tick and system monitor then cost half the CPU: 0.6 s
# against 1.2 s over a 16-trial sweep, on cores the trials share on one machine).
DASK_ENV = {
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
    "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s",
    "DASK_DISTRIBUTED__WORKER__MEMORY__MONITOR_INTERVAL": "1s",
    "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "2s",
}


def worker_command(scheduler: str, *extra: str) -> list[str]:
    """``dask worker`` as the trials want it: one thread per worker process (one BLAS thread
    per trial, as local workers), no dashboard; ``extra`` options passed on (e.g.
    ``--nworkers 4`` for four processes)."""
    dask = [sys.executable, "-m", "dask", "worker", scheduler]
    return [*dask, "--nthreads", "1", "--no-dashboard", *extra]


def run_worker(scheduler: str, extra: list[str]) -> None:
    """Become the Dask worker (exec: signals and exit status are the worker's own)."""
    os.execve(sys.executable, worker_command(scheduler, *extra), {**os.environ, **DASK_ENV})


def lines(host: str, scheduler_port: int, storage_port: int, mlflow_port: int) -> list[str]:
    """What to run elsewhere: a worker machine's line, and the sweep's."""
    address = _connectable(host)
    return [
        f"  Dask workers (every other machine, in a checkout of this project with its .venv):\n"
        f"    .venv/bin/python -m pipeline worker tcp://{address}:{scheduler_port}",
        f"  a sweep whose trials run on those workers:\n"
        f"    python -m pipeline sweep sweeps/default.toml --cluster tcp://{address}:"
        f"{scheduler_port} --storage grpc://{address}:{storage_port} "
        f"--tracking-uri http://{address}:{mlflow_port}",
        f"  the MLflow UI: http://{address}:{mlflow_port}",
    ]


def _connectable(host: str) -> str:
    """The address clients use for a service bound to ``host``."""
    return socket.gethostname() if host in ("0.0.0.0", "::", "") else host


def run_head(
    host: str,
    scheduler_port: int,
    storage_port: int,
    mlflow_port: int,
    folder: Path,
    storage: str | None = None,
) -> int:
    """Start the services, print what to run elsewhere, and wait. Returns 130 on Ctrl-C, 1 when a
    service stops by itself (the others are then stopped too), 2 when one cannot start."""
    wanted = services(
        host, scheduler_port, storage_port, mlflow_port, folder, storage or default_storage(folder)
    )
    check_ports(host, wanted)
    folder.mkdir(parents=True, exist_ok=True)
    warning = binding_warning(host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    env = {**server_env(), **DASK_ENV}  # each service reads its own settings
    started: list[tuple[Service, subprocess.Popen]] = []
    # SIGTERM (the head stopped alone) stops every service, as Ctrl-C does
    with TerminateAsInterrupt() as stop:
        try:
            for service in wanted:
                # a session of its own: Ctrl-C reaches this process, which stops them in order
                process = subprocess.Popen(service.command, env=env, start_new_session=True)
                started.append((service, process))
            for service, process in started:
                if not _ready(host, service, process):
                    print(
                        f"error: the {service.name} did not start (exit status {process.poll()})",
                        file=sys.stderr,
                    )
                    return 1
                print(f"{service.name} ready on {host}:{service.port}", flush=True)
            print("\n".join(lines(host, scheduler_port, storage_port, mlflow_port)), flush=True)
            print(f"state in {folder}; Ctrl-C stops every service", flush=True)
            return _supervise(host, started, env)
        except KeyboardInterrupt:
            return stop.status
        finally:
            _stop([process for _, process in started])


MAX_RESTARTS = 5  # a service that stops is started again, this many times at most


def _supervise(
    host: str, started: list[tuple[Service, subprocess.Popen]], env: dict[str, str]
) -> int:
    """Until Ctrl-C: a service that stops is started again on its port (its clients wait for
    it: the storage proxy's up to a minute, MLflow's for minutes); one that keeps stopping
    stops the head."""
    restarts = dict.fromkeys((service.name for service, _ in started), 0)
    while True:
        for i, (service, process) in enumerate(started):
            if process.poll() is None:
                continue
            if restarts[service.name] == MAX_RESTARTS:
                print(
                    f"error: the {service.name} stopped {MAX_RESTARTS + 1} times (exit status "
                    f"{process.returncode}); stopping the others",
                    file=sys.stderr,
                )
                return 1
            restarts[service.name] += 1
            print(
                f"the {service.name} stopped (exit status {process.returncode}); starting it again",
                file=sys.stderr,
                flush=True,
            )
            process = subprocess.Popen(service.command, env=env, start_new_session=True)
            started[i] = (service, process)
            if _ready(host, service, process):
                print(f"{service.name} ready again on {host}:{service.port}", flush=True)
        time.sleep(0.5)


def _ready(host: str, service: Service, process: subprocess.Popen) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if service.health:
                with urllib.request.urlopen(service.health, timeout=5) as response:
                    response.read(16)
            else:
                socket.create_connection((_connectable(host), service.port), timeout=5).close()
            return True
        except OSError:  # not listening yet
            time.sleep(0.2)
    return False


def _stop(processes: list[subprocess.Popen], timeout: float = 20.0) -> None:
    """SIGTERM to each service's process group, then SIGKILL to what is left."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def serve_storage(url: str, host: str, port: int) -> None:
    """Optuna's gRPC proxy over the storage at ``url`` (a journal file's path or an RDB URL),
    until stopped."""
    import warnings

    import optuna

    from pipeline.search import make_storage, repair_storage

    repaired = repair_storage(url)
    if repaired:
        print(repaired, flush=True)
    with warnings.catch_warnings():  # "experimental": the proxy is new in Optuna 4.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.get_storage(make_storage(url))
        optuna.storages.run_grpc_proxy_server(storage, host=host, port=port)
