"""Run on one test host against another (``python tests/anonymous_probe.py HOST CA_FILE``):
scan every TCP port of HOST once, then knock on each open one as an anonymous client would,
and print what answered as JSON. Only HOST is contacted; each try has a short timeout.

For each open port: plain HTTP, HTTPS trusting the cluster's authority but with no login and
no client certificate, the Dask protocol over plain TCP and over TLS without a certificate, and
a gRPC call without TLS and over TLS without a certificate. A try "answers" when the service
served it: an HTTP status below 400 (``/health`` apart: a liveness check says nothing), a Dask
reply, a gRPC reply. Anything else (a closed connection, a refused handshake, 401) is a
refusal."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
import sys
from typing import Any

CONNECT_TIMEOUT = 1.0  # a port on the other end of a virtual link answers in microseconds
TRY_TIMEOUT = 5.0
PATHS = ("/", "/metrics", "/json/identity.json", "/info/main/workers.html", "/sitemap.json")
PATHS += ("/api/2.0/mlflow/experiments/search?max_results=1",)


async def _open(host: str, port: int, gate: asyncio.Semaphore) -> int | None:
    async with gate:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError):
            return None
        writer.close()
        return port


async def _scan(host: str) -> list[int]:
    gate = asyncio.Semaphore(512)
    found = await asyncio.gather(*(_open(host, p, gate) for p in range(1, 65536)))
    return sorted(p for p in found if p is not None)


def _http(host: str, port: int, context: ssl.SSLContext | None) -> dict[str, int | str]:
    """Each path's status, or why no status came back."""
    import http.client

    answers: dict[str, int | str] = {}
    for path in PATHS:
        if context is None:
            connection: Any = http.client.HTTPConnection(host, port, timeout=TRY_TIMEOUT)
        else:
            connection = http.client.HTTPSConnection(
                host, port, timeout=TRY_TIMEOUT, context=context
            )
        try:
            connection.request("GET", path)
            answers[path] = connection.getresponse().status
        except (OSError, http.client.HTTPException, ssl.SSLError) as err:
            answers[path] = type(err).__name__
        finally:
            connection.close()
    return answers


def _dask(host: str, port: int, ca_file: str | None) -> str:
    """A Dask identity request, as a client with no certificate would send it."""
    from distributed.comm import connect
    from distributed.security import Security

    async def ask() -> str:
        if ca_file is None:
            comm = await connect(f"tcp://{host}:{port}", timeout=TRY_TIMEOUT)
        else:
            security = Security(tls_ca_file=ca_file)  # trusts the authority, shows nothing
            options = security.get_connection_args("client")
            comm = await connect(f"tls://{host}:{port}", timeout=TRY_TIMEOUT, **options)
        try:
            await comm.write({"op": "identity", "reply": True})
            reply = await asyncio.wait_for(comm.read(), TRY_TIMEOUT)
            return f"answered: {str(reply)[:80]}"
        finally:
            await comm.close()

    try:
        return asyncio.run(ask())
    except Exception as err:  # noqa: BLE001 - every failure is a refusal; its name is shown
        return type(err).__name__


def _grpc(host: str, port: int, ca_file: str | None) -> str:
    import grpc
    from optuna.storages._grpc.auto_generated import api_pb2, api_pb2_grpc

    target = f"{host}:{port}"
    if ca_file is None:
        channel = grpc.insecure_channel(target)
    else:
        with open(ca_file, "rb") as ca:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca.read())
        channel = grpc.secure_channel(target, credentials)
    try:
        stub = api_pb2_grpc.StorageServiceStub(channel)
        stub.GetAllStudies(api_pb2.GetAllStudiesRequest(), timeout=TRY_TIMEOUT)
        return "answered"
    except grpc.RpcError as err:
        return err.code().name
    finally:
        channel.close()


class _Overdue(Exception):
    pass


def _within(seconds: int, attempt: Any, *args: Any) -> Any:
    """``attempt(*args)``, or "overdue" once ``seconds`` have passed (a server that keeps a
    request open must not hold the scan: it counts as a refusal of that try)."""

    def overdue(signum: int, frame: Any) -> None:
        raise _Overdue

    before = signal.signal(signal.SIGALRM, overdue)
    signal.alarm(seconds)
    try:
        return attempt(*args)
    except _Overdue:
        return "overdue"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


def probe(host: str, ca_file: str) -> dict[str, Any]:
    tls = ssl.create_default_context(cafile=ca_file)
    tls.check_hostname = False  # the certificate's names are not what is tested here
    ports = asyncio.run(_scan(host))
    tried: dict[str, Any] = {}
    limit = 3 * int(TRY_TIMEOUT)
    for port in ports:
        tried[str(port)] = {
            "http": _within(limit * len(PATHS), _http, host, port, None),
            "https": _within(limit * len(PATHS), _http, host, port, tls),
            "dask": _within(limit, _dask, host, port, None),
            "dask-tls": _within(limit, _dask, host, port, ca_file),
            "grpc": _within(limit, _grpc, host, port, None),
            "grpc-tls": _within(limit, _grpc, host, port, ca_file),
        }
    return {"host": host, "ports": ports, "tried": tried}


def answered(tries: dict[str, Any]) -> list[str]:
    """The anonymous tries of one port that the service served."""
    found = []
    for kind in ("http", "https"):
        if not isinstance(tries[kind], dict):  # the whole try was overdue
            continue
        for path, status in tries[kind].items():
            if isinstance(status, int) and status < 400 and path != "/health":
                found.append(f"{kind} {path}: {status}")
    found += [kind for kind in ("dask", "dask-tls") if tries[kind].startswith("answered")]
    found += [kind for kind in ("grpc", "grpc-tls") if tries[kind] == "answered"]
    return found


if __name__ == "__main__":
    socket.setdefaulttimeout(TRY_TIMEOUT)
    print(json.dumps(probe(sys.argv[1], sys.argv[2])))
