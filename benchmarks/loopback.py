"""Real services on loopback, for the end-to-end tests and the benchmarks: the head (Dask
scheduler, storage proxy, MLflow server) with Dask workers each started in an empty folder of
its own, and a throwaway PostgreSQL server. Everything started here is stopped here."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POSTGRES_USER = "nobody"  # PostgreSQL refuses to run as root
READY = "Ctrl-C stops every service"  # the head's last line once every service answers


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports nothing listens on (yet)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 120, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


# the caller's store and cluster credentials: never the processes' started here
CALLERS = (
    "MLFLOW_TRACKING_URI",
    "REGSWEEP_CREDENTIALS",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
)


def child_env() -> dict[str, str]:
    """The environment of the processes started here: no tracking URI or bundle of the
    caller's."""
    clean = {k: v for k, v in os.environ.items() if k not in CALLERS}
    return {**clean, "PYTHONUNBUFFERED": "1"}


def start_head(
    folder: Path, scheduler: int, storage: int, mlflow: int, *args: str
) -> subprocess.Popen:
    """``python -m pipeline head`` in ``folder`` on these ports, its output in ``head.out``; in
    a session of its own, Ctrl-C (SIGINT) as a terminal sends it."""
    ports = ["--scheduler-port", str(scheduler), "--storage-port", str(storage)]
    (web,) = free_ports(1)  # the scheduler's web routes: several heads may run at once
    ports += ["--dashboard-address", f"127.0.0.1:{web}"]
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "head", *ports, "--mlflow-port", str(mlflow), *args],
        cwd=folder,
        stdout=open(folder / "head.out", "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        env=child_env(),
        start_new_session=True,
    )


def head_ready(folder: Path) -> str:
    """What the head in ``folder`` printed, once all its services answer."""

    def printed() -> str | None:
        text = (folder / "head.out").read_text()
        return text if READY in text else None

    return wait_for(printed, 180, "the head's services")


class LoopbackCluster:
    """The head's services and ``n_workers`` one-thread Dask workers (no nanny: the process
    that runs the tasks is the one a test may kill), on free loopback ports under ``folder``;
    with ``--secure`` among ``head_args``, behind TLS and a login, the workers joining with
    the bundle (``credentials``)."""

    def __init__(self, folder: Path, n_workers: int = 2, *head_args: str) -> None:
        self.folder = folder
        scheduler, storage, mlflow = free_ports(3)
        secure = "--secure" in head_args
        self.scheduler = f"{'tls' if secure else 'tcp'}://127.0.0.1:{scheduler}"
        self.storage = f"grpc://127.0.0.1:{storage}"
        self.tracking = f"{'https' if secure else 'http'}://127.0.0.1:{mlflow}"
        self.credentials = folder / "mlruns" / "head" / "credentials.json" if secure else None
        self.head = start_head(folder, scheduler, storage, mlflow, *head_args)
        self.workers: list[subprocess.Popen] = []
        try:
            head_ready(folder)
            for _ in range(n_workers):
                self.workers.append(self.start_worker())
        except BaseException:
            self.stop()
            raise

    def start_worker(self) -> subprocess.Popen:
        """One more worker, as the head tells users to start them, in an empty folder; returns
        once the scheduler counts it."""
        home = self.folder / f"worker-{time.monotonic_ns()}"
        home.mkdir()
        joining = ["--credentials", str(self.credentials)] if self.credentials else []
        worker = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "worker", *joining, self.scheduler]
            + ["--no-nanny", "--local-directory", str(home)],
            cwd=home,
            stdout=open(home / "worker.out", "w"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            env=child_env(),
            start_new_session=True,
        )
        alive = sum(w.poll() is None for w in self.workers) + 1
        with self.client() as client:
            wait_for(lambda: len(client.nthreads()) >= alive, 120, "the worker to join")
        return worker

    def client(self) -> Any:
        """A Dask client of the scheduler (with the bundle's certificate when secure)."""
        from distributed import Client

        security = None
        if self.credentials is not None:
            from pipeline.config import read_credentials

            security = read_credentials(self.credentials).dask_security()
        return Client(self.scheduler, timeout=30, security=security)

    def stop(self) -> None:
        for process in [*self.workers, self.head]:
            if process.poll() is None:
                process.send_signal(signal.SIGINT if process is self.head else signal.SIGTERM)
        for process in [*self.workers, self.head]:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.contextmanager
def loopback_cluster(
    folder: Path, n_workers: int = 2, *head_args: str
) -> Iterator[LoopbackCluster]:
    cluster = LoopbackCluster(folder, n_workers, *head_args)
    try:
        yield cluster
    finally:
        cluster.stop()


def postgres_installed() -> Path | None:
    """The folder of Debian's PostgreSQL programs (``make postgres`` installs them), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _secure_postgres(folder: Path, tls: Path) -> str:
    """The server's certificate and key (the head's) and a new password, in ``folder``,
    readable by the server's user alone; returns the password."""
    import secrets

    password = secrets.token_urlsafe(16)
    (folder / "password").write_text(password + "\n")
    for name in ("server.pem", "server-key.pem", "password"):
        if name != "password":
            shutil.copy(tls / name, folder / name)
        os.chmod(folder / name, 0o600)
        if os.geteuid() == 0:
            shutil.chown(folder / name, POSTGRES_USER)
    return password


def _as_user(*command: str) -> None:
    """Run ``command`` as the unprivileged user; its output to nobody's pipe (the server that
    pg_ctl starts would hold a captured pipe open, and the call would never return)."""
    prefix = ["runuser", "-u", POSTGRES_USER, "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*prefix, *command],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )


@contextlib.contextmanager
def postgres_server(bin_dir: Path, tls: Path | None = None) -> Iterator[str]:
    """A fresh PostgreSQL server in a temporary folder, run by an unprivileged user on a free
    loopback port; yields the URL of its database ``studies``. Stopped and removed after.
    With ``tls`` (a secure head's secrets folder), it takes only TLS connections with a
    password (SCRAM), its certificate the head's, and the URL checks it (``verify-full``)."""
    with postgres(bin_dir, tls) as server:
        yield server.url


@dataclass
class Postgres:
    url: str  # of its database ``studies``
    restart: Callable[[], None]  # stop it (fast: connections cut) and start it again


@contextlib.contextmanager
def postgres(bin_dir: Path, tls: Path | None = None) -> Iterator[Postgres]:
    """:func:`postgres_server`, with a way to restart it."""
    # not under a test's temporary folder, which only root may enter
    folder = Path(tempfile.mkdtemp(prefix="pipeline-postgres-"))
    data = folder / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, POSTGRES_USER)
        shutil.chown(data, POSTGRES_USER)
    (port,) = free_ports(1)
    try:
        password = _secure_postgres(folder, tls) if tls else None
        login = ["--auth-host=scram-sha-256", f"--pwfile={folder / 'password'}"] if tls else []
        _as_user(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", *login)
        options = f"-p {port} -k {folder} -h 127.0.0.1"
        if tls:  # TLS only, with the password: every host line of its rules made hostssl
            rules = data / "pg_hba.conf"
            rules.write_text(rules.read_text().replace("\nhost ", "\nhostssl "))
            options += f" -c ssl=on -c ssl_cert_file={folder}/server.pem"
            options += f" -c ssl_key_file={folder}/server-key.pem"
        log = str(folder / "server.log")
        _as_user(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", log, "-w", "start")
        try:
            server = ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
            if tls:
                server[1] = folder  # its socket: the password file is for TCP clients
            _as_user(str(bin_dir / "createdb"), *server, "studies")
            control = [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", log]

            def restart() -> None:
                _as_user(*control, "-m", "fast", "-w", "restart")

            url = f"postgresql://postgres@127.0.0.1:{port}/studies"
            if tls:
                url = url.replace("postgres@", f"postgres:{password}@")
                url += f"?sslmode=verify-full&sslrootcert={tls / 'ca.pem'}"
            yield Postgres(url, restart)
        finally:
            _as_user(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
