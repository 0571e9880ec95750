"""`sweep --cluster`: the trials as tasks on a real Dask cluster on loopback (a scheduler and two
`dask worker` processes, each started in an empty folder of its own), the study behind the
head's gRPC storage proxy and the runs on its MLflow server; every test on a plain cluster and
on a secure one (`head --secure`: TLS with client certificates, HTTPS and a login, the workers
and the sweeps joining with the bundle). What only a secure cluster does (refusals, no secret
shown anywhere) is tested on the secure one alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import optuna
import pandas as pd
import pytest
from e2e import (
    SMOKE,
    alive,
    env,
    free_ports,
    long_sweep,
    start_sweep,
    sweep,
    wait_for,
    worker_pids,
)
from mlflow import MlflowClient

from benchmarks.loopback import CALLERS, LoopbackCluster
from pipeline.config import use_credentials
from pipeline.search import make_storage

pytestmark = pytest.mark.slow


class Cluster(LoopbackCluster):
    """The loopback cluster, with what the tests ask of it."""

    def join(self) -> list[str]:
        """What a sweep joins a secure cluster with (nothing for a plain one)."""
        return ["--credentials", str(self.credentials)] if self.credentials else []

    def args(self) -> list[str]:
        return ["--cluster", self.scheduler, "--storage", self.storage, *self.join()]

    def tracking_args(self) -> list[str]:
        return ["--tracking-uri", self.tracking]

    def study(self, name: str) -> optuna.Study:
        return optuna.load_study(study_name=name, storage=make_storage(self.storage))

    def runs(self, name: str) -> list:
        client = MlflowClient(self.tracking)
        experiment = client.get_experiment_by_name(name).experiment_id
        return client.search_runs([experiment], max_results=1000)


@pytest.fixture(scope="module", params=["plain", "secure"])
def cluster(request, tmp_path_factory) -> Iterator[Cluster]:
    secure = ["--secure"] if request.param == "secure" else []
    running = Cluster(tmp_path_factory.mktemp(f"cluster-{request.param}"), 2, *secure)
    saved = {name: os.environ.get(name) for name in CALLERS}
    try:
        if running.credentials:  # this process reads the study and the runs as a sweep does
            use_credentials(running.credentials)
        yield running
    finally:
        running.stop()
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


# What does not depend on TLS (stopping, retrying, a dead sweep, the data's way to the
# workers) is checked once, on the plain cluster; the secure one runs the smoke sweep and what
# only it does (at the end of this file).
plain_only = pytest.mark.parametrize("cluster", ["plain"], indirect=True)


def test_the_smoke_sweep_through_the_cluster_lands_like_a_local_one(cluster, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    done = sweep(remote, *cluster.args(), *cluster.tracking_args())
    assert done.returncode == 0, done.stdout + done.stderr
    local = tmp_path / "local"
    local.mkdir()
    assert sweep(local, "--n-jobs", "1").returncode == 0

    study = cluster.study("smoke")
    assert len(study.trials) == 8 and all(t.state.is_finished() for t in study.trials)
    from e2e import runs as local_runs
    from e2e import study as local_study

    here = local_study(local)

    # the baselines run the same configuration everywhere: the same numbers on the cluster
    def by_baseline(trials: list) -> dict[str, float]:
        return {t.user_attrs["baseline"]: t.value for t in trials if "baseline" in t.user_attrs}

    baselines, there = by_baseline(here.trials), by_baseline(study.trials)
    assert there == pytest.approx(baselines, rel=1e-12) and len(there) == 3
    # every task suggests parameters of its own (tasks do not share a sampler's state)
    searched = [repr(t.params) for t in study.trials if "baseline" not in t.user_attrs]
    assert len(searched) == 5 and len(set(searched)) == len(searched)

    found = cluster.runs("smoke")
    roles = [r.data.tags.get("pipeline.role") for r in found]
    assert roles.count("study") == 1 and roles.count("trial") == 8
    states = {t.number: t.state for t in study.trials}
    client = MlflowClient(cluster.tracking)
    for run in (r for r in found if r.data.tags.get("pipeline.role") == "trial"):
        number = int(run.data.tags["trial"])
        assert run.info.status != "RUNNING"
        state = run.data.tags["state"]
        assert (state == "complete") == (states[number] == optuna.trial.TrialState.COMPLETE)
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "history.csv" in files and (state != "complete" or "model.npz" in files)
    parent = next(r for r in found if r.data.tags.get("pipeline.role") == "study")
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "plots"} <= parent_files
    model_id = parent.data.tags["model_uri"].removeprefix("models:/")  # through the server
    assert client.get_logged_model(model_id).source_run_id == parent.info.run_id
    _, local_children = local_runs(local)
    assert len(local_children) == 8 and parent.data.tags["best_run_id"]
    # nothing of the sweep landed in the workers' folders but their own scratch
    for worker in cluster.folder.glob("worker-*"):
        assert not (worker / "mlruns").exists()

    report = subprocess.run(
        [sys.executable, "-m", "pipeline", "report", "smoke", *cluster.tracking_args()]
        + cluster.join(),
        cwd=remote,
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
    )
    assert report.returncode == 0, report.stderr
    assert (remote / "reports" / "smoke" / "index.html").is_file()


def busy_workers(cluster: Cluster) -> int:
    """Workers of the cluster running a task now."""
    with cluster.client() as client:
        counts = client.run(lambda dask_worker: len(dask_worker.state.executing))
    return sum(1 for n in counts.values() if n)


def executed(cluster: Cluster) -> int:
    """Tasks the cluster's workers have run so far."""
    with cluster.client() as client:
        counts = client.run(lambda dask_worker: dask_worker.state.executed_count)
    return sum(counts.values())


@plain_only
def test_a_csv_study_with_repeats_runs_wholly_on_the_cluster(cluster, tmp_path):
    """The CSV file lives only in the sweep's folder: the workers get the data from the sweep.
    The re-runs and the peer's fits run on the cluster too, and the answer is the local one."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["label"] = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(int)
    text = (
        SMOKE.read_text()
        .replace('name = "smoke"', 'name = "points"\nrepeats = 2\ntop_k = 2', 1)
        .replace(
            'name = "sine"\nseed = 1',
            'name = "csv"\npath = "points.csv"\ntarget = "label"\ntask = "classification"',
        )
        .replace("n_trials = 8", "n_trials = 6")
    )
    results = {}
    for where in ("remote", "local"):
        folder = tmp_path / where
        folder.mkdir()
        frame.to_csv(folder / "points.csv", index=False)
        (folder / "points.toml").write_text(text)
        before = executed(cluster)
        args = [*cluster.args(), *cluster.tracking_args()] if where == "remote" else []
        done = sweep(folder, *args, "--n-jobs", "1", sweep_file=folder / "points.toml")
        assert done.returncode == 0, done.stdout + done.stderr
        ran = executed(cluster) - before
        if where == "remote":
            client = MlflowClient(cluster.tracking)
            experiment = client.get_experiment_by_name("points").experiment_id
            found = client.search_runs([experiment], max_results=1000)
            parent = next(r for r in found if r.data.tags.get("pipeline.role") == "study")
            # 6 trials, then 3 configurations x 2 seeds re-run and the peer's fits, as tasks
            assert ran > 6 + 6, ran
        else:
            from e2e import runs as local_runs

            parent, _ = local_runs(folder, "points")
            assert ran == 0
        # the baseline's re-runs and the peer's fits are the same networks everywhere (the
        # searched trials are not: each machine's sampler has its own seed)
        results[where] = {
            k: v for k, v in parent.data.metrics.items() if k.startswith(("unreg", "peer-"))
        }
    assert results["remote"].keys() == results["local"].keys()
    assert any(k.startswith("unregularised.test_accuracy") for k in results["remote"])
    assert any(k.startswith("peer-") for k in results["remote"])
    for key, value in results["local"].items():
        if not key.endswith(("_time", "train_time")):
            assert results["remote"][key] == pytest.approx(value, rel=1e-9), key
    for worker in cluster.folder.glob("worker-*"):
        assert not list(worker.rglob("points.csv"))


@plain_only
def test_ctrl_c_stops_the_cluster_trials_and_a_rerun_resumes(cluster, tmp_path):
    sweep_file = long_sweep(tmp_path)
    args = [*cluster.args(), "--no-tracking"]
    proc = start_sweep(tmp_path, *args, "--set", "study.name=long-cc", sweep_file=sweep_file)

    def running() -> int:
        try:
            trials = cluster.study("long-cc").get_trials(deepcopy=False)
        except KeyError:  # not created yet
            return 0
        return sum(t.state == optuna.trial.TrialState.RUNNING for t in trials)

    # both trials reserved and both tasks training on a worker
    wait_for(lambda: running() == 2, 180, "two running trials on the cluster")
    wait_for(lambda: busy_workers(cluster) == 2, 180, "both workers running a trial's task")
    stopped = {
        t.number
        for t in cluster.study("long-cc").get_trials(deepcopy=False)
        if t.state == optuna.trial.TrialState.RUNNING
    }
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, proc.stdout.read()
    trials = cluster.study("long-cc").get_trials(deepcopy=False)
    assert running() == 0  # their retries wait in the queue for the next run
    # each trial running at Ctrl-C ends interrupted, unless it finished first: the chapter's
    # baselines train for their own 500 epochs, the search's trials until stopped
    ended = {t.number: t for t in trials if t.number in stopped}
    interrupted = [n for n, t in ended.items() if t.user_attrs.get("interrupted")]
    assert interrupted and all(
        t.user_attrs.get("interrupted") or t.state == optuna.trial.TrialState.COMPLETE
        for t in ended.values()
    ), [(t.number, t.state, t.user_attrs.get("baseline")) for t in trials]
    assert sum(bool(t.user_attrs.get("interrupted")) for t in trials) == len(interrupted)

    rerun = ["--set", "study.name=long-cc", "--set", "fixed.max_epochs=30"]
    done = sweep(tmp_path, *args, *rerun, sweep_file=sweep_file)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = cluster.study("long-cc").get_trials(deepcopy=False)
    counted = [t for t in trials if not t.user_attrs.get("interrupted")]
    assert len(counted) == 4 and all(t.state.is_finished() for t in counted)
    assert running() == 0


@plain_only
def test_a_killed_dask_worker_s_trial_runs_again_with_its_parameters(cluster, tmp_path):
    # several seconds a trial: two of them overlap long enough to be seen on a busy machine
    sweep_file = long_sweep(tmp_path, max_epochs=40_000)
    args = [*cluster.args(), *cluster.tracking_args(), "--set", "study.name=killed"]
    proc = start_sweep(tmp_path, *args, sweep_file=sweep_file)

    def running() -> list:
        try:
            trials = cluster.study("killed").get_trials(deepcopy=False)
        except KeyError:
            return []
        return [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]

    def training() -> list:  # running, their parameters drawn (every trial here has some)
        busy = running()
        return busy if len(busy) == 2 and all(t.params for t in busy) else []

    wait_for(lambda: training() or proc.poll() is not None, 300, "two trials on the cluster")
    assert proc.poll() is None, f"the sweep ended first:\n{proc.communicate()[0]}"
    before = {t.number: t.params for t in running()}
    victim = cluster.workers.pop(0)
    victim.kill()  # kill -9 of a worker mid-trial
    victim.wait()
    cluster.workers.append(cluster.start_worker())
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    trials = cluster.study("killed").get_trials(deepcopy=False)
    assert len(trials) == 4 and all(t.state.is_finished() for t in trials)
    for number, params in before.items():  # run again in place, with the same parameters
        assert trials[number].params == params
    found = cluster.runs("killed")
    assert not [r for r in found if r.info.status == "RUNNING"]
    # the dead attempt's run was ended by its retry, on the other worker
    trial_runs = [r for r in found if r.data.tags.get("pipeline.role") == "trial"]
    dead = [r for r in trial_runs if r.data.tags.get("state") == "interrupted"]
    assert len(dead) == 1 and int(dead[0].data.tags["trial"]) in before
    complete = [r for r in trial_runs if r.data.tags.get("state") == "complete"]
    assert len({r.data.tags["trial"] for r in complete}) == sum(
        t.state == optuna.trial.TrialState.COMPLETE for t in trials
    )


@plain_only
def test_a_dead_sweep_s_tasks_end_their_trials_and_a_second_sweep_is_refused(cluster, tmp_path):
    sweep_file = long_sweep(tmp_path)
    args = ["--cluster", cluster.scheduler, "--no-tracking", "--set", "study.name=orphans"]
    args += cluster.join()
    proc = start_sweep(tmp_path, *args, "--storage", cluster.storage, sweep_file=sweep_file)

    def running() -> int:
        try:
            trials = cluster.study("orphans").get_trials(deepcopy=False)
        except KeyError:
            return 0
        return sum(t.state == optuna.trial.TrialState.RUNNING for t in trials)

    wait_for(lambda: running() == 2, 180, "two running trials on the cluster")
    # the same study through another spelling of the proxy's address, from another folder:
    # the cluster's lease refuses it, not a local lock
    other = tmp_path / "other"
    other.mkdir()
    elsewhere = cluster.storage.replace("127.0.0.1", "localhost")
    refused = sweep(other, *args, "--storage", elsewhere, sweep_file=sweep_file)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "is being run by another sweep on this cluster" in refused.stderr
    assert running() == 2

    idle = worker_pids(proc.pid)  # its local processes, warmed for the end's figures
    assert idle
    proc.kill()  # kill -9 of the sweep command: its tasks go on, with nobody to report to
    proc.wait()
    started = time.monotonic()
    wait_for(
        lambda: running() == 0 and busy_workers(cluster) == 0,
        120,
        "the orphaned tasks to end their trials and free their workers",
    )
    # the scheduler lets go of a dead client's tasks at once, and they notice at their next
    # check (seconds; `python -m benchmarks stops` measures it): well before the lease expires
    assert time.monotonic() - started < 30
    for pid in idle:  # and they end too, rather than idle for minutes holding its output
        wait_for(lambda pid=pid: not alive(pid), 60, f"the dead sweep's process {pid} to end")
    for pid in idle:  # and they end too, rather than idle for minutes holding its output
        wait_for(lambda pid=pid: not alive(pid), 60, f"the dead sweep's process {pid} to end")
    trials = cluster.study("orphans").get_trials(deepcopy=False)
    said = [(t.number, t.state, t.user_attrs) for t in trials]
    assert sum(bool(t.user_attrs.get("interrupted")) for t in trials) == 2, said

    rerun = ["--storage", cluster.storage, "--set", "fixed.max_epochs=30"]
    done = sweep(tmp_path, *args, *rerun, sweep_file=sweep_file)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = cluster.study("orphans").get_trials(deepcopy=False)
    counted = [t for t in trials if not t.user_attrs.get("interrupted")]
    assert len(counted) == 4 and all(t.state.is_finished() for t in counted)


@plain_only
def test_an_unreachable_scheduler_fails_within_seconds_in_one_line(cluster, tmp_path):
    (port,) = free_ports(1)
    started = time.monotonic()
    unreachable = ["--cluster", f"tcp://127.0.0.1:{port}", "--storage", cluster.storage]
    unreachable += cluster.join()
    done = sweep(tmp_path, *unreachable, "--no-tracking")
    assert done.returncode == 2
    assert time.monotonic() - started < 60
    assert f"cluster = 'tcp://127.0.0.1:{port}': no Dask scheduler answers" in done.stderr
    assert not (tmp_path / "mlruns").exists()


def test_a_local_store_is_refused_with_a_cluster(tmp_path):
    done = sweep(tmp_path, "--cluster", "tcp://127.0.0.1:1", "--no-tracking")
    assert done.returncode == 2
    assert "with --cluster every machine opens the study" in done.stderr
    assert "grpc://HOST:PORT" in done.stderr and not (tmp_path / "mlruns").exists()


def test_the_scheduler_address_from_the_environment_or_the_sweep_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:1")
    done = sweep(tmp_path, "--no-tracking")
    assert done.returncode == 2 and "with --cluster every machine opens the study" in done.stderr
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
    done = sweep(tmp_path, "--no-tracking", "--set", "study.cluster=tcp://127.0.0.1:1")
    assert done.returncode == 2 and "with --cluster every machine opens the study" in done.stderr
    assert not (tmp_path / "mlruns").exists()


def test_a_task_asks_the_scheduler_whether_to_stop_at_most_once_a_period():
    from pipeline.search._dask import _at_most_every

    answers = iter([False, True])
    asked = []

    def check() -> bool:
        asked.append(time.monotonic())
        return next(answers)

    throttled = _at_most_every(0.3, check)
    assert [throttled() for _ in range(50)] == [False] * 50 and len(asked) == 1
    time.sleep(0.35)
    assert throttled() and throttled() and len(asked) == 2


def test_a_sweep_has_the_cluster_s_workers_make_their_imports_while_it_prepares():
    from distributed import Client, LocalCluster

    from pipeline.config import load_sweep
    from pipeline.search._phase import warm_workers

    def imported() -> bool:
        return "pipeline.tracking" in sys.modules  # MLflow's import: over a second

    cfg = load_sweep(SMOKE)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as fresh,
        Client(fresh) as client,
    ):
        assert not any(client.run(imported).values())
        warm_workers(cfg, client).join()
        assert list(client.run(imported).values()) == [True, True]


# What a secure cluster alone does: on the secure instance of the cluster above.
secure_only = pytest.mark.parametrize("cluster", ["secure"], indirect=True)


def _another_cluster_s_bundle(cluster: Cluster, folder) -> object:
    """A bundle of the same addresses, from another certificate authority and login."""
    from pipeline.cluster._tls import prepare
    from pipeline.config import read_credentials

    where = {"scheduler": cluster.scheduler, "storage": cluster.storage}
    where["tracking"] = cluster.tracking
    prepare(folder / "tls", folder / "credentials.json", "127.0.0.1", where)
    return read_credentials(folder / "credentials.json")


@secure_only
def test_every_anonymous_or_foreign_probe_of_the_three_ports_is_refused(cluster, tmp_path):
    import grpc
    import requests
    from distributed import Client
    from optuna.storages._grpc.auto_generated import api_pb2, api_pb2_grpc

    from pipeline.config import read_credentials

    ours = read_credentials(cluster.credentials)
    other = _another_cluster_s_bundle(cluster, tmp_path)
    port = cluster.scheduler.rsplit(":", 1)[1]

    # the Dask scheduler: plain TCP, and TLS with another authority's certificate
    for address, security in ((f"tcp://127.0.0.1:{port}", None), (cluster.scheduler, other)):
        started = time.monotonic()
        with pytest.raises((OSError, TimeoutError)):
            Client(address, timeout=5, security=security and security.dask_security())
        assert time.monotonic() - started < 30
    with cluster.client() as client:  # the bundle's certificate: in
        assert len(client.nthreads()) >= 2

    # the storage proxy: plain gRPC, and TLS with another authority's client certificate
    host, grpc_port = cluster.storage.removeprefix("grpc://").split(":")
    channels = {
        "plain": grpc.insecure_channel(f"{host}:{grpc_port}"),
        "foreign": grpc.secure_channel(f"{host}:{grpc_port}", other.grpc_credentials()),
        "ours": grpc.secure_channel(f"{host}:{grpc_port}", ours.grpc_credentials()),
    }
    answers = {}
    for name, channel in channels.items():
        stub = api_pb2_grpc.StorageServiceStub(channel)
        try:
            stub.GetAllStudies(api_pb2.GetAllStudiesRequest(), timeout=5)
            answers[name] = "answered"
        except grpc.RpcError as err:
            answers[name] = err.code().name
        channel.close()
    assert answers == {"plain": "UNAVAILABLE", "foreign": "UNAVAILABLE", "ours": "answered"}

    # the MLflow server: plain HTTP gets nothing; HTTPS without a login, or with a wrong one,
    # gets 401 (and the UI's login prompt); the bundle's login gets in
    search = f"{cluster.tracking}/api/2.0/mlflow/experiments/search?max_results=1"
    with pytest.raises(requests.ConnectionError):
        requests.get(search.replace("https://", "http://"), timeout=5)
    with pytest.raises(requests.exceptions.SSLError):  # another authority does not trust it
        requests.get(search, timeout=5, verify=str(other.ca_file()))
    ca = str(ours.ca_file())
    anonymous = requests.get(search, timeout=5, verify=ca)
    assert anonymous.status_code == 401 and "Basic" in anonymous.headers["WWW-Authenticate"]
    wrong = requests.get(search, timeout=5, verify=ca, auth=(ours.username, other.password))
    assert wrong.status_code == 401
    page = requests.get(cluster.tracking, timeout=5, verify=ca)
    assert page.status_code == 401  # the UI asks for a login too
    assert requests.get(search, timeout=5, verify=ca, auth=(ours.username, ours.password)).ok


@secure_only
def test_a_sweep_or_a_worker_without_the_bundle_or_with_another_is_refused_in_one_line(
    cluster, tmp_path
):
    other = _another_cluster_s_bundle(cluster, tmp_path / "other")
    plain = ["--cluster", cluster.scheduler, "--storage", cluster.storage]
    plain += cluster.tracking_args()
    cases = {
        "without": (plain, ["storage proxy", "--credentials FILE", "MLflow server"]),
        "foreign": (
            ["--credentials", str(other.path)],
            ["refuses the bundle's certificate", "not the bundle's cluster's"],
        ),
    }
    for name, (args, said) in cases.items():
        started = time.monotonic()
        done = sweep(tmp_path, *args, "--set", f"study.name=refused-{name}")
        assert done.returncode == 2, done.stdout + done.stderr
        assert time.monotonic() - started < 60
        for words in said:
            assert words in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    client = MlflowClient(cluster.tracking)
    assert not [e for e in client.search_experiments() if e.name.startswith("refused")]
    assert not [
        s
        for s in optuna.get_all_study_names(make_storage(cluster.storage))
        if s.startswith("refused")
    ]

    # a worker: without the bundle, or with another cluster's, gone in seconds with one line
    for joining, said in (
        ([], "is a secure cluster's: it needs its bundle"),
        (["--credentials", str(other.path)], "refuses the bundle's certificate"),
    ):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "worker", *joining, cluster.scheduler],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env(),
            timeout=120,
        )
        assert done.returncode == 2 and said in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert time.monotonic() - started < 60


@secure_only
def test_no_secret_shows_in_logs_the_store_or_the_process_list(cluster, tmp_path):
    from pipeline.config import read_credentials

    ours = read_credentials(cluster.credentials)
    key_body = "".join(ours.key.strip().splitlines()[1:-1])
    ca_key = (cluster.folder / "mlruns" / "head" / "tls" / "ca-key.pem").read_text()
    secrets = {
        "password": ours.password,
        "client key": key_body[-40:],  # the key's own bytes (its start is a common header)
        "authority's key": "".join(ca_key.strip().splitlines()[1:-1])[-40:],
    }
    log = tmp_path / "sweep.out"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "sweep", str(SMOKE), *cluster.join()]
            + ["--set", "study.name=scanned", "-v"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env(),
        )
        processes = []
        while proc.poll() is None:  # the process list, every half second of the sweep
            listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True)
            processes.append(listing.stdout)
            time.sleep(0.5)
    output = log.read_text()
    assert proc.returncode == 0, output
    texts = {"sweep output (-v)": output, "process list": "\n".join(processes)}
    for log in cluster.folder.rglob("*.out"):  # the head's and the workers' logs
        texts[str(log)] = log.read_text()
    client = MlflowClient(cluster.tracking)
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=2000):
            texts[f"run {run.info.run_id}"] = repr(run.data.params) + repr(run.data.tags)
    assert any(t.startswith("run ") for t in texts)
    for what, secret in secrets.items():
        for where, text in texts.items():
            assert secret not in text, f"the {what} shows in {where}"
