"""What each command of ``python -m pipeline`` does, given its parsed arguments; an exit
status back. The command line's shape (its options and help) is :mod:`pipeline.cli`'s."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def join(args: argparse.Namespace) -> str | None:
    """A secure cluster's bundle (``--credentials``, else ``$REGSWEEP_CREDENTIALS``) made this
    process's, its addresses the defaults of the options left out; one line when it cannot be
    used, else None."""
    import os

    from pipeline.config import ENV, CredentialsError, use_credentials

    path = getattr(args, "credentials", None) or (
        os.environ.get(ENV) if hasattr(args, "credentials") else None
    )
    if not path:
        return None
    try:
        credentials = use_credentials(path)
    except CredentialsError as err:
        return f"error: {err}"
    for option, default in (
        ("cluster", credentials.scheduler),
        ("scheduler", credentials.scheduler),
        ("storage", credentials.storage),
        ("tracking_uri", credentials.tracking),
    ):
        if hasattr(args, option) and getattr(args, option) is None:
            setattr(args, option, default)
    return None


def _checked(args: argparse.Namespace) -> Any:
    """The sweep file with the command line's overrides, validated, and its locations checked;
    raises ConfigError. Nothing is written."""
    from pipeline.config import check_locations, load_sweep, parse_override
    from pipeline.search import storage_url
    from pipeline.tracking import tracking_uri

    overrides = [parse_override(text) for text in args.set]
    for flag, key in (
        ("n_trials", "study.n_trials"),
        ("n_jobs", "study.n_jobs"),
        ("seed", "study.seed"),
        ("timeout", "study.timeout"),
    ):
        if getattr(args, flag, None) is not None:
            overrides.append((key.split("."), getattr(args, flag)))
    if args.no_tracking:
        overrides.append((["tracking", "enabled"], False))
    cfg = load_sweep(args.file, overrides)
    tracking = args.tracking_uri or cfg.tracking.uri
    check_locations(
        storage_url(cfg, args.storage),
        tracking_uri(tracking) if cfg.tracking.enabled else None,
        args.file,
    )
    return cfg


def check(args: argparse.Namespace) -> int:
    """Validate a sweep file and say what a sweep of it would do, writing nothing."""
    from pipeline.config import ConfigError
    from pipeline.search import describe, load_data

    try:
        cfg = _checked(args)
        dataset = load_data(cfg)
    except ConfigError as err:
        print(f"error: invalid sweep\n{err}", file=sys.stderr)
        return 2
    print(describe(cfg, dataset, args.storage, args.tracking_uri))
    return 0


def sweep(args: argparse.Namespace) -> int:
    from pipeline.config import ConfigError

    try:
        cfg = _checked(args)
    except ConfigError as err:
        print(f"error: invalid sweep\n{err}", file=sys.stderr)
        return 2
    from pipeline.interrupts import TerminateAsInterrupt
    from pipeline.search import DiskFullError, run_sweep

    with TerminateAsInterrupt() as stop:  # SIGTERM stops the sweep as Ctrl-C does
        try:
            summary = run_sweep(
                cfg,
                storage=args.storage,
                tracking_uri=args.tracking_uri,
                sweep_file=args.file,
                cluster=args.cluster,
            )
        except ConfigError as err:
            print(f"error: cannot run the sweep\n{err}", file=sys.stderr)
            return 2
        except DiskFullError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # before the workers started, or a second Ctrl-C / SIGTERM
            print("interrupted: re-run the same command to resume the study", file=sys.stderr)
            return stop.status
    if summary.interrupted:
        return stop.status
    # an error that stopped the workers, or not one trial completed: the sweep did not work
    return 1 if summary.errors or not summary.states["complete"] else 0


def _store_problem(uri: str | None, must_exist: bool = False) -> str | None:
    """One line saying why the MLflow store cannot be read, or None (within seconds: MLflow
    itself would retry an unreachable server for minutes). A read command (``must_exist``)
    never creates a store: a local one that is not there is an error."""
    from pathlib import Path

    from pipeline.config import mask_credentials, tracking_problem
    from pipeline.tracking import tracking_uri

    uri = tracking_uri(uri)
    why = tracking_problem(uri)
    local = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if why is None and must_exist and local is not None and not local.is_file():
        why = "no MLflow store there yet: run a sweep first (`make sweep`)"
    return None if why is None else f"error: tracking uri = {mask_credentials(uri)!r}: {why}"


def _port_problem(port: int, target: str = "ui") -> str | None:
    from pipeline.config import port_problem

    if not 1 <= port <= 65535:
        return f"error: --port {port}: must be a port number in 1..65535"
    if port_problem("127.0.0.1", port) is not None:
        return (
            f"error: --port {port}: already in use on 127.0.0.1; try make {target} PORT={port + 1}"
        )
    return None


def ui(args: argparse.Namespace) -> int:
    """The MLflow UI server over the store, on localhost only, until Ctrl-C."""
    from pathlib import Path

    from pipeline.config import mask_credentials
    from pipeline.tracking import DEFAULT_STORE, serve, server_command, tracking_uri

    uri = tracking_uri(args.tracking_uri)
    if (problem := _port_problem(args.port) or _store_problem(uri)) is not None:
        print(problem, file=sys.stderr)
        return 2
    root = None
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        root = (DEFAULT_STORE / "artifacts").resolve().as_uri()
    base = f"http://127.0.0.1:{args.port}"
    print(f"MLflow UI on {base} over {mask_credentials(uri)}, starting...", flush=True)
    return serve(server_command(uri, args.port, root), base)


def report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline import analysis

    if (problem := _store_problem(args.tracking_uri, must_exist=True)) is not None:
        print(problem, file=sys.stderr)
        return 2
    try:
        studies = args.studies or analysis.studies(args.tracking_uri)
        if not studies:
            print("error: no study in the store yet: run `make sweep` first", file=sys.stderr)
            return 2
        pages = analysis.write_reports(studies, args.tracking_uri, Path(args.out))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. --out is a file, or read-only
        print(
            f"error: cannot write the reports under {args.out!r}: {err.strerror}", file=sys.stderr
        )
        return 2
    for page in pages:
        print(f"wrote {page}")
    return 0


def studies(args: argparse.Namespace) -> int:
    """Every study of a store with its progress, as a table."""
    from pipeline import analysis

    if (problem := _store_problem(args.tracking_uri, must_exist=True)) is not None:
        print(problem, file=sys.stderr)
        return 2
    table = analysis.progress(args.tracking_uri)
    if table.empty:
        print("no study in the store yet: run `make sweep` first")
        return 0
    table["best"] = table["best"].map(lambda v: f"{v:.4g}")
    table["last_change"] = table["last_change"].dt.strftime("%Y-%m-%d %H:%M:%S UTC")
    print(table.to_string(index=False))
    return 0


def figures(args: argparse.Namespace) -> int:
    """Draw and log the figures of trials of a study (the sweep draws the best and the
    baselines' itself)."""
    from pipeline.search import figures_of

    if (problem := _store_problem(args.tracking_uri, must_exist=True)) is not None:
        print(problem, file=sys.stderr)
        return 2
    try:
        done = figures_of(args.study, args.trials, args.tracking_uri)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    missing = sorted(set(args.trials) - set(done))
    print(f"figures logged for trial(s) {done}" if done else "no figures logged")
    if missing:
        print(f"error: no complete trial {missing} with a logged model", file=sys.stderr)
        return 2
    return 0


def head(args: argparse.Namespace) -> int:
    """The shared services (Dask scheduler, Optuna storage proxy, MLflow server) until Ctrl-C."""
    from pathlib import Path

    from pipeline.config import missing_extra

    if why := missing_extra("distributed", "cluster") or missing_extra("grpc", "cluster"):
        print(f"error: head {why}", file=sys.stderr)
        return 2
    from pipeline.cluster import HeadError, is_secure, run_head, web_routes

    try:
        ports = (args.scheduler_port, args.storage_port, args.mlflow_port)
        secure = is_secure(args.host, args.secure, args.insecure)
        tls_dir = Path(args.tls_dir) if args.tls_dir else None
        return run_head(
            args.host,
            *ports,
            Path(args.dir),
            args.storage,
            secure,
            tls_dir,
            web_routes(args.dashboard_address, args.dashboard),
        )
    except HeadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def worker(args: argparse.Namespace) -> int:
    from pipeline.config import missing_extra

    if why := missing_extra("distributed", "cluster"):
        print(f"error: worker {why}", file=sys.stderr)
        return 2
    if args.scheduler is None:
        print("error: worker: the scheduler's address, or --credentials FILE", file=sys.stderr)
        return 2
    from pipeline.cluster import HeadError, loopback_web, run_worker

    try:  # Dask's web routes have no login: loopback only
        options = loopback_web(args.dask_options)
    except HeadError as err:
        print(f"error: worker: {err}", file=sys.stderr)
        return 2
    from pipeline.search import scheduler_problem

    if why := scheduler_problem(args.scheduler):  # refused in seconds, not retried forever
        print(f"error: worker: {why}", file=sys.stderr)
        return 2
    run_worker(args.scheduler, options)
    return 0  # not reached: the process has become the worker


def init(args: argparse.Namespace) -> int:
    """Write a sweep file for a CSV or a bundled data set, checked as a sweep file first;
    nothing is written when the data or the file would be wrong."""
    import tempfile
    from pathlib import Path

    from pipeline.config import ConfigError, data_lines, data_stem, load_sweep, sweep_text

    out = Path(args.out or f"sweeps/{data_stem(args.data)}.toml")
    if out.exists() and not args.force:
        print(
            f"error: init: {out} exists: --force replaces it, --out names another", file=sys.stderr
        )
        return 2
    try:
        text = sweep_text(args.data, args.target, args.task, str(out))
        with tempfile.TemporaryDirectory() as tmp:  # checked as `sweep` would, before writing
            (Path(tmp) / out.name).write_text(text)
            load_sweep(Path(tmp) / out.name)
    except ValueError as err:
        print(f"error: init: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:  # a bug of the template: say it as sweep would
        print(err, file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    for line in data_lines(text):  # what was read, as the file now says it
        print(line)
    print(f"wrote {out}; next: python -m pipeline check {out}, then python -m pipeline sweep {out}")
    return 0


def dashboard(args: argparse.Namespace) -> int:
    """optuna-dashboard over the study storage, read-only, on localhost, until Ctrl-C."""
    from pathlib import Path

    from pipeline.config import mask_credentials, missing_extra, storage_problem
    from pipeline.search import DEFAULT_STORAGE

    url = args.storage or str(DEFAULT_STORAGE)
    why = missing_extra("optuna_dashboard", "dashboard") or _port_problem(args.port, "dashboard")
    if why is None and "://" not in url and not Path(url).is_file():
        why = "no study storage there yet: run a sweep first (`make sweep`)"
    if why is None and (problem := storage_problem(url)) is not None:
        why = f"storage = {mask_credentials(url)!r}: {problem}"
    if why is not None:
        print(why if why.startswith("error:") else f"error: dashboard {why}", file=sys.stderr)
        return 2
    from pipeline.search import serve_dashboard

    print(
        f"optuna-dashboard on http://127.0.0.1:{args.port} over {mask_credentials(url)} "
        "(read-only: safe during a sweep), Ctrl-C stops it",
        flush=True,
    )
    from pipeline.interrupts import TerminateAsInterrupt

    with TerminateAsInterrupt():  # SIGTERM stops it as Ctrl-C does: a clean stop, status 0
        serve_dashboard(url, args.port)
    return 0


def storage_proxy(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.cluster import serve_storage
    from pipeline.config import mask_credentials

    print(f"Optuna storage proxy for {mask_credentials(args.storage)}", flush=True)
    serve_storage(args.storage, args.host, args.port, Path(args.tls_dir) if args.tls_dir else None)
    return 0
