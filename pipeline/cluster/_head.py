"""``python -m pipeline head``: the shared services of a sweep that reaches beyond one process
tree, started as child processes of this one and stopped together (Ctrl-C):

- the Dask scheduler, which worker machines join;
- Optuna's gRPC storage proxy (``python -m pipeline storage-proxy``) over one storage, by
  default a journal file in the head's folder (the proxy its only client), else an RDB such
  as PostgreSQL, so that every process reads and writes the study through one server;
- an MLflow tracking server with artifact proxying, so that histories, models and figures
  travel over HTTP and no machine needs the head's filesystem.

Every service binds to 127.0.0.1 unless ``--host`` says otherwise. Beyond loopback the head
is secure unless ``--insecure`` says otherwise (``--secure`` on loopback): the scheduler and the
storage proxy speak TLS and accept only clients with a certificate of the cluster's authority,
the MLflow server speaks HTTPS and asks for a login; the bundle that joins the cluster is
written for workers and sweeps (:mod:`pipeline.cluster._tls`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from secrets import token_urlsafe

from pipeline.cluster._tls import Secrets, machine_names, prepare
from pipeline.config import active_credentials, port_problem
from pipeline.interrupts import TerminateAsInterrupt
from pipeline.tracking import server_env

LOOPBACK = "127.0.0.1"
LOOPBACK_NAMES = (LOOPBACK, "localhost", "::1")
READY_TIMEOUT = 120.0  # seconds for a service to answer after it starts


class HeadError(Exception):
    """The services cannot start (a port in use): one line, nothing started."""


@dataclass(frozen=True)
class WebRoutes:
    """Where the Dask scheduler serves its HTTP routes, and which. Dask serves them on a port
    of their own (8787) even with ``--no-dashboard``, with no login: logs, call stacks and
    exceptions of every worker, ``/metrics``, a proxy. They are bound to loopback whatever
    the head's ``--host``, and only the health check is served unless the dashboard is asked
    for (reached from elsewhere through an SSH tunnel)."""

    port: int = 8787
    dashboard: bool = False


# the one route served without --dashboard: answers "ok", says nothing of the cluster
HEALTH_ONLY = '["distributed.http.health"]'


def web_routes(address: str, dashboard: bool) -> WebRoutes:
    """``--dashboard-address [HOST:]PORT``, refused in one line beyond loopback."""
    host, _, port = address.rpartition(":")
    if host.strip("[]") not in ("", *LOOPBACK_NAMES) or not port.isdigit():
        raise HeadError(
            f"--dashboard-address {address}: Dask's web routes have no login, so they are "
            "served on loopback alone; allowed: [127.0.0.1:]PORT, reached from another machine "
            "through an SSH tunnel (ssh -L PORT:127.0.0.1:PORT HEAD), or the MLflow UI and "
            "`python -m pipeline dashboard` for the runs and the study"
        )
    return WebRoutes(int(port), dashboard)


def loopback_web(options: list[str]) -> list[str]:
    """A worker's ``dask worker`` options with its ``--dashboard-address`` (if any) bound to
    loopback: ``PORT`` and ``:PORT`` (which Dask binds to every address) become
    ``127.0.0.1:PORT``; another host is refused (:func:`web_routes`)."""
    options = list(options)
    for i, option in enumerate(options):
        name, given, value = option.partition("=")
        if name == "--dashboard-address":
            end = i + 1 if given else i + 2
            port = web_routes(value if given else "".join(options[i + 1 : end]), False).port
            options[i:end] = ["--dashboard-address", f"{LOOPBACK}:{port}"]
            break
    return options


@dataclass(frozen=True)
class Service:
    name: str
    option: str  # the command-line option that sets its port
    port: int
    command: list[str]
    health: str | None = None  # an HTTP page that answers once it is ready; else a TCP connect


def services(
    host: str,
    scheduler_port: int,
    storage_port: int,
    mlflow_port: int,
    folder: Path,
    storage: str,
    secure: Secrets | None = None,
    web: WebRoutes = WebRoutes(),
) -> list[Service]:
    """The three services, their state under ``folder`` (the study's ``storage``, by default a
    journal file there: one proxy process is its only client); behind TLS, and MLflow's behind
    a login, with ``secure``'s secrets (paths only on the command lines); the scheduler's web
    routes as ``web`` says, on loopback."""
    mlflow = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(mlflow_port)]
    mlflow += ["--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    mlflow += ["--artifacts-destination", str(folder / "artifacts")]
    if host not in LOOPBACK_NAMES:
        mlflow += ["--allowed-hosts", ",".join(allowed_hosts(host))]
    scheduler = [sys.executable, "-m", "dask", "scheduler", "--host", host, "--port"]
    scheduler += [str(scheduler_port), "--dashboard" if web.dashboard else "--no-dashboard"]
    scheduler += ["--dashboard-address", f"{LOOPBACK}:{web.port}"]
    proxy = [sys.executable, "-m", "pipeline", "storage-proxy", storage, "--host", host]
    proxy += ["--port", str(storage_port)]
    if secure is not None:
        tls = ["--tls-ca-file", str(secure.ca), "--tls-cert", str(secure.cert)]
        scheduler += ["--protocol", "tls", *tls, "--tls-key", str(secure.key)]
        proxy += ["--tls-dir", str(secure.folder)]
        keys = f"--ssl-keyfile {shlex.quote(str(secure.key))} "
        mlflow += ["--app-name", "basic-auth", "--uvicorn-opts"]
        mlflow += [keys + f"--ssl-certfile {shlex.quote(str(secure.cert))}"]
    scheme = "https" if secure else "http"
    return [
        Service("Dask scheduler", "--scheduler-port", scheduler_port, scheduler),
        Service("Optuna storage proxy", "--storage-port", storage_port, proxy),
        Service(
            "MLflow server",
            "--mlflow-port",
            mlflow_port,
            mlflow,
            health=f"{scheme}://{_connectable(host)}:{mlflow_port}/health",
        ),
    ]


def web_line(web: WebRoutes) -> str:
    """What the head says of the scheduler's web routes."""
    served = "the Dask dashboard" if web.dashboard else "the Dask scheduler's health check"
    return (
        f"{served} on {LOOPBACK}:{web.port}, this machine only (from another: "
        f"ssh -L {web.port}:{LOOPBACK}:{web.port} HEAD)"
    )


def allowed_hosts(host: str) -> list[str]:
    """The Host headers MLflow's server answers beyond loopback: its defaults (loopback and
    private addresses) and this machine's names, which the printed lines and the bundle use
    (else: "Invalid Host header - possible DNS rebinding attack detected")."""
    from mlflow.server.security_utils import get_default_allowed_hosts

    names = [n if ":" not in n else f"[{n}]" for n in machine_names(host)]
    return get_default_allowed_hosts() + names + [f"{n}:*" for n in names]


def default_storage(folder: Path) -> str:
    """A journal file: behind the proxy it costs a fifth of SQLite's time a report (1.1 ms
    against 5.4) and a third a trial's ask, suggest and tell (26 ms against 79); on loopback
    that made the cluster path as fast as the local one, where SQLite left it at 0.8x."""
    return str(folder / "optuna.journal")


def is_secure(host: str, secure: bool, insecure: bool) -> bool:
    """Secure beyond loopback unless ``insecure``; on loopback when asked (``secure``)."""
    if secure and insecure:
        raise HeadError("--secure and --insecure: choose one")
    return secure or (host not in LOOPBACK_NAMES and not insecure)


def binding_warning(host: str, secure: bool = False) -> str | None:
    """What an insecure head beyond loopback exposes, or None."""
    if secure or host in LOOPBACK_NAMES:
        return None
    return (
        f"warning: --insecure on {host}: anyone who reaches this machine can run code on every "
        "worker (the Dask scheduler), read, change or delete every study (the storage proxy) "
        "and every run, model and artifact (the MLflow server); without --insecure the head "
        "is secure (TLS, client certificates, a login)"
    )


def check_ports(host: str, wanted: list[Service], web: WebRoutes = WebRoutes()) -> None:
    """Refuse, before starting anything, a port that something else already listens on."""
    ports = [(host, service.port, service.name, service.option) for service in wanted]
    ports.append((LOOPBACK, web.port, "the Dask scheduler's web routes", "--dashboard-address"))
    for address, port, name, option in ports:
        if (why := port_problem(address, port)) is not None:
            raise HeadError(
                f"port {port} ({name}) cannot be used on {address}: {why}; "
                f"stop what holds it or choose another with {option}"
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
    # Dask's web routes, served even with --no-dashboard and with no login: the health check
    # alone (see WebRoutes), on loopback (the commands' --dashboard-address)
    "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES": HEALTH_ONLY,
    "DASK_DISTRIBUTED__WORKER__HTTP__ROUTES": HEALTH_ONLY,
}
# a worker's web routes: a port of the system's choosing, on loopback
WORKER_WEB = ["--dashboard-address", f"{LOOPBACK}:0"]


def worker_command(scheduler: str, *extra: str) -> list[str]:
    """``dask worker`` as the trials want it: one thread per worker process (one BLAS thread
    per trial, as local workers), no dashboard, its web routes on loopback; ``extra`` options
    passed on (e.g. ``--nworkers 4`` for four processes)."""
    dask = [sys.executable, "-m", "dask", "worker", scheduler]
    web = [] if "--dashboard-address" in extra else WORKER_WEB
    return [*dask, "--nthreads", "1", "--no-dashboard", *web, *extra]


def run_worker(scheduler: str, extra: list[str]) -> None:
    """Become the Dask worker: ``dask worker`` run in this process (its signals and exit
    status are its own), with the active bundle's certificates in Dask's settings, as text:
    never a file or an argument (its nanny hands the settings to the processes it starts)."""
    os.environ.update(DASK_ENV)
    import dask
    from distributed.cli.dask_worker import main

    dask.config.refresh()  # the settings above, and the environment's
    if (credentials := active_credentials()) is not None:
        dask.config.set(credentials.dask_config())
    main(worker_command(scheduler, *extra)[4:], prog_name="dask worker")


def addresses(
    host: str, scheduler_port: int, storage_port: int, mlflow_port: int, secure: bool
) -> dict[str, str]:
    """Where clients reach the three services."""
    address = _connectable(host)
    return {
        "scheduler": f"{'tls' if secure else 'tcp'}://{address}:{scheduler_port}",
        "storage": f"grpc://{address}:{storage_port}",
        "tracking": f"{'https' if secure else 'http'}://{address}:{mlflow_port}",
    }


def secure_lines(bundle: Path, tracking: str) -> list[str]:
    """What to run elsewhere, for a secure head: every line takes the bundle."""
    return [
        f"  the credentials to join: {bundle} (private: copy it to each machine, mode 0600)",
        "  Dask workers (every other machine, in a checkout of this project with its .venv):\n"
        "    .venv/bin/python -m pipeline worker --credentials credentials.json",
        "  a sweep whose trials run on those workers:\n"
        "    python -m pipeline sweep sweeps/default.toml --credentials credentials.json",
        f"  the MLflow UI: {tracking} (user and password: the bundle's username and password)",
    ]


def lines(where: dict[str, str]) -> list[str]:
    """What to run elsewhere, for a plain head at ``where`` (:func:`addresses`): a worker
    machine's line, and the sweep's."""
    return [
        f"  Dask workers (every other machine, in a checkout of this project with its .venv):\n"
        f"    .venv/bin/python -m pipeline worker {where['scheduler']}",
        f"  a sweep whose trials run on those workers:\n"
        f"    python -m pipeline sweep sweeps/default.toml --cluster {where['scheduler']} "
        f"--storage {where['storage']} --tracking-uri {where['tracking']}",
        f"  the MLflow UI: {where['tracking']}",
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
    secure: bool = False,
    tls_dir: Path | None = None,
    web: WebRoutes = WebRoutes(),
) -> int:
    """Start the services, print what to run elsewhere, and wait. Returns 130 on Ctrl-C, 1 when a
    service stops by itself (the others are then stopped too), 2 when one cannot start.
    ``secure``: TLS and logins, the secrets in ``tls_dir`` (by default ``tls`` in ``folder``),
    the bundle ``credentials.json`` in ``folder``."""
    storage = storage or default_storage(folder)
    ports = (scheduler_port, storage_port, mlflow_port)
    check_ports(host, services(host, *ports, folder, storage), web)
    folder.mkdir(parents=True, exist_ok=True)
    where = addresses(host, *ports, secure)
    secrets, bundle = None, folder / "credentials.json"
    if secure:
        secrets = prepare(tls_dir or folder / "tls", bundle, host, where)
    wanted = services(host, *ports, folder, storage, secrets, web)
    warning = binding_warning(host, secure)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    env = {**server_env(), **DASK_ENV}  # each service reads its own settings
    if web.dashboard:  # Dask's own routes, for its dashboard's pages
        del env["DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES"]
    if secrets is not None:  # MLflow's login: its settings file, and the key of its forms
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(secrets.mlflow_auth)
        # (MLflow reads the key from its environment alone: the services' own, never shown)
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = token_urlsafe(32)
    started: list[tuple[Service, subprocess.Popen]] = []
    # SIGTERM (the head stopped alone) stops every service, as Ctrl-C does
    with TerminateAsInterrupt() as stop:
        try:
            for service in wanted:
                # a session of its own: Ctrl-C reaches this process, which stops them in order
                process = subprocess.Popen(service.command, env=env, start_new_session=True)
                started.append((service, process))
            for service, process in started:
                if not _ready(host, service, process, secrets):
                    print(
                        f"error: the {service.name} did not start (exit status {process.poll()})",
                        file=sys.stderr,
                    )
                    return 1
                print(f"{service.name} ready on {host}:{service.port}", flush=True)
            print(web_line(web), flush=True)
            if secrets is None:
                print("\n".join(lines(where)), flush=True)
            else:
                print("\n".join(secure_lines(bundle, where["tracking"])), flush=True)
            print(f"state in {folder}; Ctrl-C stops every service", flush=True)
            return _supervise(host, started, env, secrets)
        except KeyboardInterrupt:
            return stop.status
        finally:
            _stop([process for _, process in started])


MAX_RESTARTS = 5  # a service that stops is started again, this many times at most


def _supervise(
    host: str,
    started: list[tuple[Service, subprocess.Popen]],
    env: dict[str, str],
    secrets: Secrets | None,
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
            if _ready(host, service, process, secrets):
                print(f"{service.name} ready again on {host}:{service.port}", flush=True)
        time.sleep(0.5)


def _ready(host: str, service: Service, process: subprocess.Popen, secrets: Secrets | None) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    context = ssl.create_default_context(cafile=str(secrets.ca)) if secrets else None
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if service.health:
                with urllib.request.urlopen(service.health, timeout=5, context=context) as answer:
                    answer.read(16)
            else:
                _connect(_connectable(host), service.port, secrets)
            return True
        except urllib.error.HTTPError:  # it answers (a login asked for: it is up)
            return True
        except OSError:  # not listening yet
            time.sleep(0.2)
    return False


def _connect(host: str, port: int, secrets: Secrets | None) -> None:
    """A connection to ``host:port``; over TLS for a secure head's services, with the head's
    own certificate (which its authority signed for clients too), so that the service sees a
    whole handshake, not one it would log as failed."""
    with socket.create_connection((host, port), timeout=5) as connection:
        if secrets is None:
            return
        context = ssl.create_default_context(cafile=str(secrets.ca))
        context.check_hostname = False  # the certificate's names are checked by the clients
        context.load_cert_chain(secrets.cert, secrets.key)
        context.wrap_socket(connection).close()  # the handshake is in the wrapping


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


def serve_storage(url: str, host: str, port: int, tls_dir: Path | None = None) -> None:
    """Optuna's gRPC proxy over the storage at ``url`` (a journal file's path or an RDB URL),
    until stopped; with ``tls_dir`` (a secure head's secrets) on a TLS port that accepts only
    clients with a certificate of the cluster's authority."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    import optuna
    from optuna.storages._grpc.auto_generated import api_pb2_grpc
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    from pipeline.search import make_storage, repair_storage

    repaired = repair_storage(url)
    if repaired:
        print(repaired, flush=True)
    storage = optuna.storages.get_storage(make_storage(url))
    # Optuna's run_grpc_proxy_server, with the port's credentials of our choosing
    server = grpc.server(ThreadPoolExecutor(max_workers=10))
    api_pb2_grpc.add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)
    if tls_dir is None:
        server.add_insecure_port(f"{host}:{port}")
    else:
        secrets = Secrets(tls_dir)
        server_credentials = grpc.ssl_server_credentials(
            [(secrets.key.read_bytes(), secrets.cert.read_bytes())],
            root_certificates=secrets.ca.read_bytes(),
            require_client_auth=True,
        )
        server.add_secure_port(f"{host}:{port}", server_credentials)
    server.start()
    server.wait_for_termination()
