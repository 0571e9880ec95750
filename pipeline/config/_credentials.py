"""The credentials bundle of a secure cluster: one JSON file, permissions 0600, that ``head``
writes and that workers and sweeps take (``--credentials FILE`` or ``$REGSWEEP_CREDENTIALS``).

It holds the services' addresses, the cluster's certificate authority, a client certificate
and its key (the Dask scheduler and the storage proxy check it: mutual TLS) and the MLflow
login. Only the file's path travels, in the environment of the processes a command starts;
each reads the file itself, so that no secret is on a command line, in an environment, a log
line or an error. MLflow's client takes the login from the ``regsweep`` request-auth plugin
(:mod:`pipeline.tracking`) and checks the server's certificate against the authority, a public
file (``MLFLOW_TRACKING_SERVER_CERT_PATH``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV = "REGSWEEP_CREDENTIALS"
AUTH_PLUGIN = "regsweep"  # MLFLOW_TRACKING_AUTH: the entry point of pyproject.toml


class CredentialsError(ValueError):
    """A bundle that cannot be used: one line naming the file and what is wrong, never its
    contents."""


@dataclass(frozen=True)
class Credentials:
    path: Path
    scheduler: str  # tls://HOST:PORT
    storage: str  # grpc://HOST:PORT, served over TLS
    tracking: str  # https://HOST:PORT
    ca: str = field(repr=False)  # PEM: the cluster's certificate authority
    cert: str = field(repr=False)  # PEM: the client certificate it signed
    key: str = field(repr=False)  # PEM: its private key
    username: str = field(repr=False)  # the MLflow login
    password: str = field(repr=False)

    def ca_file(self) -> Path:
        """The authority's certificate (public) in a file, for clients that want a path."""
        digest = hashlib.sha256(self.ca.encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"regsweep-ca-{digest}.pem"
        if not path.is_file() or path.read_text() != self.ca:
            _write_private(path, self.ca, mode=0o644)
        return path

    def dask_config(self) -> dict[str, Any]:
        """Dask's TLS settings, certificates as text (Dask takes either): for a worker's
        ``dask.config.set``, which its nanny passes on to the processes it starts."""
        return {
            "distributed.comm.require-encryption": True,
            "distributed.comm.tls.ca-file": self.ca,
            "distributed.comm.tls.client.cert": self.cert,
            "distributed.comm.tls.client.key": self.key,
            "distributed.comm.tls.worker.cert": self.cert,
            "distributed.comm.tls.worker.key": self.key,
        }

    def dask_security(self) -> Any:
        from distributed.security import Security

        return Security(
            tls_ca_file=self.ca,
            tls_client_cert=self.cert,
            tls_client_key=self.key,
            require_encryption=True,
        )

    def grpc_credentials(self) -> Any:
        import grpc

        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.encode(),
            private_key=self.key.encode(),
            certificate_chain=self.cert.encode(),
        )


_SECRET_FIELDS = [f.name for f in fields(Credentials) if f.name != "path"]


def write_credentials(path: Path, **values: str) -> None:
    """The bundle at ``path``, readable by its owner alone (created so: never a moment
    readable by others)."""
    missing = sorted(set(_SECRET_FIELDS) - set(values))
    assert not missing, f"a bundle needs {missing}"
    _write_private(path, json.dumps({k: values[k] for k in _SECRET_FIELDS}, indent=1))


def read_credentials(path: str | Path) -> Credentials:
    """The bundle at ``path``; :class:`CredentialsError` when it is missing, readable by
    others, or not a bundle of ``head``."""
    path = Path(path).expanduser().absolute()
    where = f"credentials {path}"
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text()
    except OSError as err:
        raise CredentialsError(f"{where}: cannot be read ({err.strerror or err})") from None
    if mode & 0o077:
        raise CredentialsError(
            f"{where}: readable by others (mode {mode:04o}); make it private: chmod 600 {path}"
        )
    try:
        values = json.loads(text)
        missing = [k for k in _SECRET_FIELDS if not isinstance(values.get(k), str)]
    except (json.JSONDecodeError, AttributeError):
        missing = _SECRET_FIELDS
    if missing:
        raise CredentialsError(
            f"{where}: not a credentials bundle written by `head` (missing: {', '.join(missing)})"
        )
    return Credentials(path, **{k: values[k] for k in _SECRET_FIELDS})


def grpc_channel(target: str, options: list[tuple[str, Any]] | None = None) -> Any:
    """A gRPC channel to ``target`` (a storage proxy): over TLS, showing the active bundle's
    client certificate, for a secure cluster; plain otherwise."""
    import grpc

    credentials = active_credentials()
    if credentials is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, credentials.grpc_credentials(), options)


def use_credentials(path: str | Path) -> Credentials:
    """Read the bundle and make it this process's (and its children's): the path in the
    environment, MLflow's client pointed at the plugin and the authority."""
    credentials = read_credentials(path)
    os.environ[ENV] = str(credentials.path)
    os.environ["MLFLOW_TRACKING_AUTH"] = AUTH_PLUGIN
    os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = str(credentials.ca_file())
    return credentials


def active_credentials() -> Credentials | None:
    """The bundle named by ``$REGSWEEP_CREDENTIALS``, or None: the cluster is not secure."""
    path = os.environ.get(ENV)
    if not path:
        return None
    with contextlib.suppress(OSError):
        return _cached(path, Path(path).stat().st_mtime_ns)
    return read_credentials(path)  # raises, saying why


@functools.lru_cache(maxsize=4)
def _cached(path: str, _mtime: int) -> Credentials:
    return read_credentials(path)


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` atomically, with ``mode`` from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    os.chmod(partial, mode)  # whatever the umask
    os.replace(partial, path)


class MlflowAuth:
    """MLflow's request-auth plugin ``regsweep`` (``MLFLOW_TRACKING_AUTH``): the login of the
    active bundle on every request to the tracking server, read from the file, never from the
    environment."""

    def get_name(self) -> str:
        return AUTH_PLUGIN

    def get_auth(self) -> Any:
        from requests.auth import HTTPBasicAuth

        credentials = active_credentials()
        if credentials is None:
            return None
        return HTTPBasicAuth(credentials.username, credentials.password)
