"""A secure head's secrets, in a private folder (``--tls-dir``, by default ``tls`` in the
head's own): a certificate authority of the cluster (taken from the folder when it holds one,
``ca.pem`` and ``ca-key.pem``, else created there), the services' certificate for this
machine's names and addresses, the MLflow server's login and user store, and the bundle that
workers and sweeps join with (:mod:`pipeline.config`'s ``write_credentials``).

The authority signs one client certificate, in the bundle: the Dask scheduler and the storage
proxy accept a client that shows a certificate it signed, and nothing else.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import read_credentials, write_credentials

MLFLOW_USER = "regsweep"
YEARS = 10  # the authority's life; the certificates it signs are issued again at each start


@dataclass(frozen=True)
class Secrets:
    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def key(self) -> Path:
        return self.folder / "server-key.pem"

    @property
    def mlflow_auth(self) -> Path:
        """MLflow's basic-auth settings (``MLFLOW_AUTH_CONFIG_PATH``): its admin's password."""
        return self.folder / "mlflow-auth.ini"


def prepare(folder: Path, bundle: Path, host: str, addresses: dict[str, str]) -> Secrets:
    """The secrets of a head bound to ``host``, its bundle naming ``addresses`` (scheduler,
    storage, tracking); the authority and the MLflow login kept from an earlier start."""
    from cryptography.hazmat.primitives import serialization

    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    found = Secrets(folder)
    ca_cert, ca_key = _authority(folder)
    names = machine_names(host)
    cert, key = _issue(ca_cert, ca_key, "regsweep services", names)
    _write(found.cert, cert)
    _write(found.key, key)
    client_cert, client_key = _issue(ca_cert, ca_key, "regsweep client", [])
    password = _mlflow_password(folder, bundle)
    write_credentials(
        bundle,
        **addresses,
        ca=ca_cert.public_bytes(serialization.Encoding.PEM).decode(),
        cert=client_cert,
        key=client_key,
        username=MLFLOW_USER,
        password=password,
    )
    return found


def machine_names(host: str) -> list[str]:
    """What clients may call this machine: loopback, its names, its addresses, ``host``."""
    hostname = socket.gethostname()
    names = {"localhost", "127.0.0.1", "::1", hostname, socket.getfqdn()}
    if host not in ("0.0.0.0", "::", ""):
        names.add(host)
    with contextlib.suppress(OSError):  # a name that does not resolve: no addresses needed
        names.update(socket.gethostbyname_ex(hostname)[2])
    return sorted(names)


def _authority(folder: Path) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = folder / "ca.pem", folder / "ca-key.pem"
    if cert_path.is_file() and key_path.is_file():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"regsweep cluster {socket.gethostname()}")]
    )
    cert = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key))
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM).decode(), mode=0o644)
    return cert, key


def _builder(subject: Any, issuer: Any, key: Any) -> Any:
    """A certificate of ``key``'s public half, for ``subject`` by ``issuer``, valid from five
    minutes ago (clocks differ) for :data:`YEARS`; its extensions to add."""
    from cryptography import x509

    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365 * YEARS))
    )


def _issue(ca_cert: Any, ca_key: Any, common_name: str, names: list[str]) -> tuple[str, str]:
    """A certificate the authority signs, with ``names`` as its subject's alternative names
    (a server's), and its key, both as PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _builder(subject, ca_cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # Dask's workers both serve and connect with the one client certificate
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(_san(names)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key)


def _san(names: list[str]) -> list:
    from cryptography import x509

    entries: list = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def _key_pem(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _mlflow_password(folder: Path, bundle: Path) -> str:
    """The MLflow admin's password: kept from an earlier start (MLflow sets it only when its
    user store is created), else new; in MLflow's auth settings, readable by the head alone."""
    found = Secrets(folder)
    if bundle.is_file() and (folder / "mlflow-auth.db").is_file():
        return read_credentials(bundle).password
    password = secrets.token_urlsafe(24)
    settings = (
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{found.folder / 'mlflow-auth.db'}\n"
        f"admin_username = {MLFLOW_USER}\n"
        f"admin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    _write(found.mlflow_auth, settings)
    (found.folder / "mlflow-auth.db").unlink(missing_ok=True)
    return password


def _write(path: Path, text: str, mode: int = 0o600) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    os.chmod(path, mode)
