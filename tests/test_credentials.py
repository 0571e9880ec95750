"""A secure cluster's secrets: the certificate authority and certificates a head makes, the
bundle it writes (private, checked when read), MLflow's login plugin, and the masking of secrets
in what the commands print. The services themselves: tests/test_cluster.py (secure)."""

from __future__ import annotations

import importlib.metadata
import ipaddress
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from e2e import env

from pipeline.cluster._tls import prepare
from pipeline.config import (
    ENV,
    CredentialsError,
    active_credentials,
    mask_credentials,
    read_credentials,
    use_credentials,
)
from pipeline.config._credentials import MlflowAuth

WHERE = {
    "scheduler": "tls://head.lab:8786",
    "storage": "grpc://head.lab:13000",
    "tracking": "https://head.lab:5001",
}


@pytest.fixture()
def head(tmp_path):
    """A head's secrets folder and bundle, as `head --secure` makes them."""
    secrets = prepare(tmp_path / "tls", tmp_path / "credentials.json", "10.0.0.7", WHERE)
    return secrets, tmp_path / "credentials.json"


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _verified_by(ca: x509.Certificate, cert: x509.Certificate) -> None:
    """Raises unless ``ca`` signed ``cert`` (cryptography's own chain check)."""
    cert.verify_directly_issued_by(ca)


def test_the_head_s_secrets_are_private_and_its_certificates_signed_by_its_authority(head):
    secrets, bundle = head
    assert _mode(secrets.folder) == 0o700 and _mode(bundle) == 0o600
    for private in (secrets.key, secrets.folder / "ca-key.pem", secrets.mlflow_auth):
        assert _mode(private) == 0o600
    ca = x509.load_pem_x509_certificate(secrets.ca.read_bytes())
    server = x509.load_pem_x509_certificate(secrets.cert.read_bytes())
    _verified_by(ca, server)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = names.get_values_for_type(x509.DNSName)
    ips = names.get_values_for_type(x509.IPAddress)
    assert {"localhost", socket.gethostname()} <= set(dns)
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.0.0.7")} <= set(ips)

    credentials = read_credentials(bundle)
    assert (credentials.scheduler, credentials.storage, credentials.tracking) == tuple(
        WHERE.values()
    )
    assert x509.load_pem_x509_certificate(credentials.ca.encode()) == ca
    _verified_by(ca, x509.load_pem_x509_certificate(credentials.cert.encode()))
    assert credentials.password in secrets.mlflow_auth.read_text()  # MLflow's admin
    assert credentials.password not in repr(credentials) and "BEGIN" not in repr(credentials)


def test_a_restarted_head_keeps_its_authority_and_its_mlflow_login(head, tmp_path):
    secrets, bundle = head
    first = read_credentials(bundle)
    (secrets.folder / "mlflow-auth.db").touch()  # MLflow made its user store at the start
    prepare(secrets.folder, bundle, "10.0.0.7", WHERE)
    again = read_credentials(bundle)
    assert again.ca == first.ca and again.password == first.password
    assert again.cert != first.cert  # issued again, by the same authority
    # an authority the user brings (ca.pem and ca-key.pem in --tls-dir) is used as it is
    brought = tmp_path / "brought"
    brought.mkdir()
    for name in ("ca.pem", "ca-key.pem"):
        (brought / name).write_bytes((secrets.folder / name).read_bytes())
    prepare(brought, tmp_path / "other.json", "10.0.0.7", WHERE)
    assert read_credentials(tmp_path / "other.json").ca == first.ca


def test_a_bundle_that_cannot_be_used_is_refused_in_one_line_without_its_contents(head, tmp_path):
    _, bundle = head
    secret = read_credentials(bundle).password
    os.chmod(bundle, 0o644)
    with pytest.raises(CredentialsError, match=r"readable by others \(mode 0644\).*chmod 600"):
        read_credentials(bundle)
    os.chmod(bundle, 0o600)
    values = json.loads(bundle.read_text())
    del values["key"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(values))
    os.chmod(broken, 0o600)
    with pytest.raises(CredentialsError, match="missing: key") as refused:
        read_credentials(broken)
    assert secret not in str(refused.value)
    with pytest.raises(CredentialsError, match="cannot be read"):
        read_credentials(tmp_path / "nowhere.json")

    done = subprocess.run(  # the command line: one line, exit status 2, nothing started
        [sys.executable, "-m", "pipeline", "studies", "--credentials", str(tmp_path / "x.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "credentials" in done.stderr and "cannot be read" in done.stderr


def test_mlflow_s_client_takes_the_login_from_the_bundle_through_its_plugin(head, monkeypatch):
    _, bundle = head
    plugins = importlib.metadata.entry_points(group="mlflow.request_auth_provider")
    assert any(p.name == "regsweep" and p.load() is MlflowAuth for p in plugins)
    for name in (ENV, "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_SERVER_CERT_PATH"):
        monkeypatch.setenv(name, "")  # so that the test's end takes back what it sets
        monkeypatch.delenv(name)
    assert MlflowAuth().get_auth() is None and active_credentials() is None
    credentials = use_credentials(bundle)
    # only the path, the plugin's name and the public authority in the environment
    assert os.environ[ENV] == str(bundle) and os.environ["MLFLOW_TRACKING_AUTH"] == "regsweep"
    assert credentials.password not in repr(dict(os.environ))
    authority = os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    assert Path(authority).read_text() == credentials.ca
    from mlflow.tracking._tracking_service.utils import get_default_host_creds
    from mlflow.tracking.request_auth.registry import fetch_auth

    assert get_default_host_creds("https://head.lab:5001").auth == "regsweep"
    login = fetch_auth("regsweep")
    assert (login.username, login.password) == (credentials.username, credentials.password)


def test_secrets_are_masked_in_addresses_query_strings_and_headers():
    assert mask_credentials("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    masked = mask_credentials("postgresql://h/db?sslmode=require&password=hunter2")
    assert masked == "postgresql://h/db?sslmode=require&password=***"
    assert mask_credentials("https://h/x?token=abc123&n=1") == "https://h/x?token=***&n=1"
    assert mask_credentials("Authorization: Basic dXNlcjpwdw==") == "Authorization: Basic ***"
    assert mask_credentials("api_key=XYZ, access_token=QQQ") == "api_key=***, access_token=***"
    assert mask_credentials("grpc://127.0.0.1:13000") == "grpc://127.0.0.1:13000"
