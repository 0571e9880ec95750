"""``python -m pipeline ui``: a light MLflow UI server over a store, on 127.0.0.1, and the link
to each study's view once it answers.

The server runs as a child process; this one only waits for its REST API and asks it for the
studies (standard library only: importing MLflow here would delay the server by seconds).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

from pipeline.names import ROLE, ROLE_STUDY
from pipeline.tracking._view import runs_link


def command(uri: str, port: int, artifact_root: str | None) -> list[str]:
    """MLflow's UI with one server process: ready in seconds, in a fraction of the memory of
    MLflow's defaults (4 workers and job consumers, which a browsing user never needs; the
    job runner is turned off through the environment, see :func:`serve`)."""
    line = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    line += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if artifact_root:  # artifacts of experiments created by the UI itself
        line += ["--default-artifact-root", artifact_root]
    return line


def server_env() -> dict[str, str]:
    """The environment of an MLflow server process: the job runner off (its consumers cost
    memory and start-up, and nothing here submits jobs)."""
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def serve(line: list[str], base: str) -> int:
    """Run the server until it stops, Ctrl-C or SIGTERM; print each study's link once its
    REST API answers. Returns the server's exit status, 130 on Ctrl-C, 143 on SIGTERM."""
    from pipeline.interrupts import TerminateAsInterrupt

    # a session of its own, stopped here as a whole: MLflow's `ui` can hang in its own SIGTERM
    # handler (seen under load: its uvicorn child gone, itself waiting on a lock forever)
    server = subprocess.Popen(line, env=server_env(), start_new_session=True)
    with TerminateAsInterrupt() as stop:
        try:
            if _answers(base, server):
                for name, link in study_links(base).items():
                    print(f"  {name}: {link}", flush=True)
                print(f"ready on {base} (Ctrl-C stops it)", flush=True)
            return server.wait()
        except KeyboardInterrupt:
            return stop.status
        finally:
            stop_group(server)


def stop_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to ``process``'s session; after ``grace`` seconds, or once it has ended,
    SIGKILL to whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _answers(base: str, server: subprocess.Popen, timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            _post(base, "experiments/search", {"max_results": 1})
            return True
        except OSError:  # not listening yet
            time.sleep(0.2)
    return False


def _post(base: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base}/api/2.0/mlflow/{endpoint}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def study_links(base: str) -> dict[str, str]:
    """Study name -> the UI page of its view, for every experiment with a study run."""
    experiments = _post(base, "experiments/search", {"max_results": 1000}).get("experiments", [])
    links = {}
    for e in experiments:
        found = _post(
            base,
            "runs/search",
            {
                "experiment_ids": [e["experiment_id"]],
                "filter": f"tags.`{ROLE}` = '{ROLE_STUDY}'",
                "max_results": 1,
            },
        )
        if found.get("runs"):
            links[e["name"]] = runs_link(base, e["experiment_id"])
    return dict(sorted(links.items()))
