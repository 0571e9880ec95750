"""Where a sweep writes: the study storage and the MLflow tracking store, each checked (without
writing anything) before the sweep writes anything, and credentials kept out of every message.

Each check answers within a few seconds: a database is asked for one connection with a short
timeout, an MLflow server for its ``/health`` page, and a local file for a folder it may write.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.config._credentials import active_credentials, grpc_channel
from pipeline.config._sweep_file import ConfigError

STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql", "grpc")
TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "http", "https", "file", "databricks")
TIMEOUT = 5.0  # seconds for a server to answer

_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.IGNORECASE)
# a secret passed as a query parameter (?password=..., &token=...) or a header's value
_SECRET_VALUES = re.compile(
    r"(\b(?:password|passwd|pwd|secret|token|access_token|api_key|apikey|sslpassword|"
    r"authorization)\s*[=:]\s*(?:basic\s+|bearer\s+)?)[^&\s'\",;]+",
    re.IGNORECASE,
)


def mask_credentials(text: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host``, and ``password=secret``,
    ``?token=secret``, ``Authorization: Basic secret`` -> ``...***``, anywhere in ``text``."""
    return _SECRET_VALUES.sub(r"\1***", _CREDENTIALS.sub(r"\1***@", text))


def scheme_of(url: str) -> str | None:
    """``postgresql+psycopg://...`` -> ``postgresql``; None for a path."""
    return url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else None


def first_line(err: BaseException) -> str:
    """An error's first line, credentials masked: libraries' errors can run to pages."""
    text = str(err).strip().splitlines()
    return mask_credentials(text[0] if text else type(err).__name__)


def _writable(path: Path) -> bool:
    """Writable, and meant to be: root may write through any permission, but a file or folder
    with no write bit for anyone was made read-only on purpose."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)


MIN_FREE_MIB = 64  # a sweep refuses to start with less free on a disk it writes to


def _file_problem(path: Path) -> str | None:
    """Why a file at ``path`` could not be created or written, or None."""
    if path.is_dir():
        return "is a folder; give a file path"
    if path.exists():
        if not _writable(path) or not _writable(path.parent):
            return "is read-only (it, or its folder)"
        return None
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"cannot be created: {folder} is a file, not a folder"
    if not _writable(folder) or not os.access(folder, os.X_OK):
        return f"cannot be created: the folder {folder} is read-only"
    return None


def free_mib(path: Path) -> float:
    """MiB free on the disk of ``path`` (its nearest existing folder)."""
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 2**20


def space_problem(folder: Path) -> str | None:
    """Why the disk of ``folder`` is too full to start a sweep on, or None."""
    free = free_mib(folder)
    if free >= MIN_FREE_MIB:
        return None
    return (
        f"only {free:.0f} MiB free on the disk of {folder}; a sweep needs at least "
        f"{MIN_FREE_MIB} MiB: free space there and run the same command again"
    )


def _database_problem(url: str) -> str | None:
    """Why one connection to the database at ``url`` fails (in a few seconds), or None."""
    import sqlalchemy

    scheme = scheme_of(url)
    connect_args = {"connect_timeout": int(TIMEOUT)} if scheme in ("postgresql", "mysql") else {}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=connect_args)
        with engine.connect():
            pass
        engine.dispose()
    except ModuleNotFoundError as err:
        return f"its database driver is not installed ({err.name}); pip install it"
    except Exception as err:  # refused, unknown host, bad password, no such database...
        return f"cannot connect: {first_line(err)}"
    return None


def _server_problem(uri: str) -> str | None:
    """Why no MLflow server answers at ``uri``, or why it refuses this process (a secure
    cluster's without its bundle, or with another's), within a few seconds; or None."""
    import base64
    import ssl

    credentials = active_credentials()
    # a read that a server asking for a login refuses (401) and any other answers
    request = urllib.request.Request(
        uri.rstrip("/") + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
    )
    context = None
    if credentials is not None:
        login = f"{credentials.username}:{credentials.password}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(login).decode())
        context = ssl.create_default_context(cadata=credentials.ca)
    join = "a secure cluster's needs its bundle: --credentials FILE (or $REGSWEEP_CREDENTIALS)"
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:
            response.read(16)
    except urllib.error.HTTPError as err:
        if err.code != 401:  # it answers (an experiment not found, a permission): it is there
            return None
        if credentials is None:
            return f"the MLflow server asks for a login: {join}"
        return "the MLflow server refuses the bundle's login: is it this cluster's bundle?"
    except (urllib.error.URLError, OSError) as err:
        reason = str(getattr(err, "reason", err))
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            return (
                f"the MLflow server's certificate is not trusted here: {join}"
                if credentials is None
                else "the MLflow server's certificate is not the bundle's cluster's"
            )
        hint = " (a secure cluster's is https://)" if uri.startswith("http://") else ""
        return f"no MLflow server answers{hint} ({mask_credentials(reason)})"
    return None


def _sqlite_problem(path: Path) -> str | None:
    """Why an existing file is not a readable SQLite database, or None."""
    import sqlite3

    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as err:
        return f"is not a readable SQLite database ({err})"
    return None


def _journal_problem(path: Path) -> str | None:
    """Why an existing file is not an Optuna journal, or None."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    from pipeline.config._journal import open_journal, scan

    found = scan(path)
    if not found.is_journal:
        return "is not an Optuna journal (a line of it is not a journal record)"
    if found.torn:  # repaired when the sweep opens it: torn records moved aside
        return None
    try:
        open_journal(path).get_all_studies()
    except Exception as err:  # garbage, or another program's file
        return f"is not an Optuna journal ({first_line(err)})"
    return None


# what each optional part needs, and the extra that installs it
EXTRAS = {"grpc": ("grpc", "cluster"), "postgresql": ("psycopg", "postgres")}


def missing_extra(module: str, extra: str) -> str | None:
    """Why an optional part cannot run here (its extra is not installed), or None."""
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        return None
    return f"needs the {extra} extra, not installed here: pip install 'regsweep[{extra}]'"


def storage_problem(storage: str) -> str | None:
    scheme = scheme_of(storage)
    if scheme in EXTRAS and (why := missing_extra(*EXTRAS[scheme])):
        return why
    if scheme is None:
        return _file_problem(Path(storage)) or _journal_problem(Path(storage))
    if scheme not in STORAGE_SCHEMES:
        return "must be a journal file path or an Optuna database URL " + (
            f"({', '.join(s + '://...' for s in STORAGE_SCHEMES)})"
        )
    if scheme == "sqlite":
        path = Path(storage.split(":///", 1)[-1])
        return _file_problem(path) or _sqlite_problem(path)
    if scheme == "grpc":
        return _proxy_problem(storage)
    return _database_problem(storage)


def port_problem(host: str, port: int) -> str | None:
    """Why nothing new can listen on ``host:port`` (e.g. "Address already in use"), or None."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            return err.strerror or str(err)
    return None


def _proxy_problem(url: str) -> str | None:
    """Why no Optuna storage proxy answers at ``grpc://host:port``, or why it refuses this
    process (a secure cluster's without its bundle, or with another's), within seconds; or
    None."""
    import socket

    try:
        host, port = grpc_address(url)
    except ValueError as err:
        return str(err)
    try:
        socket.create_connection((host, port), timeout=TIMEOUT).close()
    except OSError as err:
        return f"no Optuna storage proxy answers at {host}:{port} ({err.strerror or err})"
    import grpc

    credentials = active_credentials()
    target = f"{host}:{port}"
    channel = grpc_channel(target)
    try:  # the connection's handshake: TLS and the certificates both ways, or plain HTTP/2
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
    except grpc.FutureTimeoutError:
        if credentials is None:
            return (
                f"the Optuna storage proxy at {target} does not answer plain gRPC: a secure "
                "cluster's needs its bundle: --credentials FILE (or $REGSWEEP_CREDENTIALS)"
            )
        return (
            f"the Optuna storage proxy at {target} refuses the bundle's certificate, or does "
            "not speak TLS: is it this cluster's bundle?"
        )
    finally:
        channel.close()
    return None


def tracking_problem(uri: str) -> str | None:
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else None
    if scheme not in TRACKING_SCHEMES:
        return (
            "must be an MLflow tracking URI (sqlite:///path/mlflow.db, http://host:port, "
            "postgresql://..., file:///path)"
        )
    if scheme == "sqlite":
        path = Path(uri.split(":///", 1)[-1])
        return _file_problem(path) or _sqlite_problem(path)
    if scheme == "file" and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        return (
            "MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE=true; use "
            "sqlite:///path/mlflow.db (the default is sqlite:///mlruns/mlflow.db)"
        )
    if scheme == "file":
        return _file_problem(Path(uri.removeprefix("file://")) / "meta.yaml")
    if scheme in ("http", "https"):
        return _server_problem(uri)
    if scheme in ("postgresql", "mysql"):
        return _database_problem(uri)
    return None


def _local_space_problem(location: str) -> str | None:
    """For a store in a local file (a journal, SQLite), why its disk is too full, or None."""
    scheme = scheme_of(location)
    if scheme is None:
        return space_problem(Path(location).parent)
    if scheme == "sqlite":
        return space_problem(Path(location.split(":///", 1)[-1]).parent)
    return None


def check_locations(storage: str, tracking: str | None, source: str = "command line") -> None:
    """Raise :class:`ConfigError` naming each location that cannot be used; ``tracking`` is
    None when tracking is off."""
    problems = []
    if why := storage_problem(storage) or _local_space_problem(storage):
        problems.append(f"storage = {mask_credentials(storage)!r}: {why}")
    if tracking is not None and (
        why := tracking_problem(tracking) or _local_space_problem(tracking)
    ):
        problems.append(f"tracking uri = {mask_credentials(tracking)!r}: {why}")
    if problems:
        raise ConfigError(source, problems)


def grpc_address(url: str) -> tuple[str, int]:
    """``grpc://host:port`` -> (host, port); ValueError naming the form otherwise."""
    address = url.removeprefix("grpc://").rstrip("/")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("a storage proxy is grpc://HOST:PORT")
    return host, int(port)
