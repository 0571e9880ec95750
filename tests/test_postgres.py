"""A real PostgreSQL server (Debian's, started by the test as an unprivileged user in a temporary
data folder, on loopback) as the study storage: directly, and behind the head's gRPC proxy."""

from __future__ import annotations

from collections.abc import Iterator

import optuna
import pytest
from e2e import free_ports, head_ready, start_head, sweep

from benchmarks.loopback import postgres_installed, postgres_server
from pipeline.search import make_storage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A database URL on a fresh server; stopped and removed afterwards."""
    bin_dir = postgres_installed()
    if bin_dir is None:
        pytest.skip("Debian's postgresql is not installed (make postgres installs it, as root)")
    with postgres_server(bin_dir) as url:
        yield url


def test_a_sweep_keeps_its_study_in_postgresql(postgres, tmp_path):
    done = sweep(tmp_path, "--storage", postgres, "--no-tracking")
    assert done.returncode == 0, done.stdout + done.stderr
    study = optuna.load_study(study_name="smoke", storage=postgres)
    assert len(study.trials) == 8 and all(t.state.is_finished() for t in study.trials)
    again = sweep(tmp_path, "--storage", postgres, "--no-tracking", "--n-trials", "10")
    assert again.returncode == 0, again.stdout + again.stderr  # resumed: 2 more
    assert len(optuna.load_study(study_name="smoke", storage=postgres).trials) == 10


def test_the_head_serves_a_postgresql_study_through_its_proxy(postgres, tmp_path):
    scheduler, storage, _ = ports = free_ports(3)
    head = start_head(tmp_path, *ports, "--storage", postgres)
    try:
        head_ready(tmp_path)
        name = ["--set", "study.name=proxied"]
        done = sweep(tmp_path, "--storage", f"grpc://127.0.0.1:{storage}", "--no-tracking", *name)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        head.terminate()
        head.wait(timeout=60)
    # the proxy wrote into PostgreSQL: the study is there without the proxy
    study = optuna.load_study(study_name="proxied", storage=make_storage(postgres))
    assert len(study.trials) == 8 and all(t.state.is_finished() for t in study.trials)


def test_postgresql_with_a_password_over_tls_keeps_the_study_and_never_shows_the_password(
    tmp_path,
):
    """The other route for a secure cluster's study (docs/cluster.md measures both): a server
    that takes only TLS connections with a password; the password never in what is printed,
    a wrong one refused in one line."""
    from pipeline.cluster._tls import prepare

    bin_dir = postgres_installed()
    if bin_dir is None:
        pytest.skip("Debian's postgresql is not installed (make postgres installs it, as root)")
    tls = tmp_path / "tls"
    prepare(tls, tmp_path / "credentials.json", "127.0.0.1", dict.fromkeys(WHERE, ""))
    with postgres_server(bin_dir, tls) as url:
        password = url.split("postgres:", 1)[1].split("@", 1)[0]
        assert "sslmode=verify-full" in url
        done = sweep(tmp_path, "--storage", url, "--no-tracking", "-v")
        assert done.returncode == 0, done.stdout + done.stderr
        assert password not in done.stdout + done.stderr
        study = optuna.load_study(study_name="smoke", storage=make_storage(url))
        assert len(study.trials) == 8 and all(t.state.is_finished() for t in study.trials)
        for wrong in (url.replace(password, "wrong"), url.split("?")[0] + "?sslmode=disable"):
            refused = sweep(tmp_path, "--storage", wrong, "--no-tracking")
            assert refused.returncode == 2, refused.stdout + refused.stderr
            assert password not in refused.stderr and "wrong@" not in refused.stderr
            assert "storage = 'postgresql://postgres:***@127.0.0.1" in refused.stderr


WHERE = ("scheduler", "storage", "tracking")
