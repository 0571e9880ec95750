"""The command line: ``python -m pipeline {sweep,ui,report,figures,head,worker} ...``.

Benchmarks are not part of the package: ``make bench`` runs ``python -m benchmarks``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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


def _check(args: argparse.Namespace) -> int:
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


def _sweep(args: argparse.Namespace) -> int:
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


def _port_problem(port: int) -> str | None:
    from pipeline.config import port_problem

    if not 1 <= port <= 65535:
        return f"error: --port {port}: must be a port number in 1..65535"
    if port_problem("127.0.0.1", port) is not None:
        return f"error: --port {port}: already in use on 127.0.0.1; try make ui PORT={port + 1}"
    return None


def _ui(args: argparse.Namespace) -> int:
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


def _report(args: argparse.Namespace) -> int:
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


def _studies(args: argparse.Namespace) -> int:
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


def _figures(args: argparse.Namespace) -> int:
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


def _head(args: argparse.Namespace) -> int:
    """The shared services (Dask scheduler, Optuna storage proxy, MLflow server) until Ctrl-C."""
    from pathlib import Path

    from pipeline.config import missing_extra

    if why := missing_extra("distributed", "cluster") or missing_extra("grpc", "cluster"):
        print(f"error: head {why}", file=sys.stderr)
        return 2
    from pipeline.cluster import HeadError, run_head

    try:
        ports = (args.scheduler_port, args.storage_port, args.mlflow_port)
        return run_head(args.host, *ports, Path(args.dir), args.storage)
    except HeadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _worker(args: argparse.Namespace) -> int:
    from pipeline.config import missing_extra

    if why := missing_extra("distributed", "cluster"):
        print(f"error: worker {why}", file=sys.stderr)
        return 2
    from pipeline.cluster import run_worker

    run_worker(args.scheduler, args.dask_options)
    return 0  # not reached: the process has become the worker


def _storage_proxy(args: argparse.Namespace) -> int:
    from pipeline.cluster import serve_storage
    from pipeline.config import mask_credentials

    print(f"Optuna storage proxy for {mask_credentials(args.storage)}", flush=True)
    serve_storage(args.storage, args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regsweep" if Path(sys.argv[0]).name == "regsweep" else "python -m pipeline",
        description="Hyperparameter sweeps and experiment tracking for regularised NumPy MLPs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_sweep(commands)
    _add_check(commands)
    _add_studies(commands)
    _add_ui(commands)
    _add_report(commands)
    _add_figures(commands)
    _add_head(commands)
    _add_worker(commands)
    _add_proxy(commands)
    for command in commands.choices.values():  # every subcommand takes them
        loudness = command.add_mutually_exclusive_group()
        loudness.add_argument(
            "-v", "--verbose", action="store_true", help="the libraries' own logs too"
        )
        loudness.add_argument(
            "-q", "--quiet", action="store_true", help="errors only (the exit status says it)"
        )
    return parser


def _add_sweep(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="run (or resume) the Optuna study of a sweep file, logging to MLflow",
        description="Run the study defined by a sweep file. Re-running the same file resumes "
        "the study: its total stays the file's n_trials. Exit status 2 on an invalid file.",
    )
    sweep.add_argument("file", help="sweep definition, e.g. sweeps/default.toml")
    sweep.add_argument("--n-trials", type=int, help="total trials of the study (study.n_trials)")
    sweep.add_argument("--n-jobs", type=int, help="worker processes (study.n_jobs)")
    sweep.add_argument("--seed", type=int, help="sampler and model seed (study.seed)")
    sweep.add_argument("--timeout", type=float, help="seconds after which no trial starts")
    sweep.add_argument(
        "--storage",
        help="Optuna storage: a journal file path, a database URL or grpc://HOST:PORT (a "
        "storage proxy, see head) (default: mlruns/optuna.journal)",
    )
    sweep.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite under mlruns/)",
    )
    sweep.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the sweep file, e.g. --set fixed.max_epochs=200 "
        "or --set search.keep_prob.low=0.3 (repeatable)",
    )
    sweep.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    sweep.add_argument(
        "--cluster",
        metavar="tcp://HOST:PORT",
        help="run the trials on the workers of this Dask scheduler (also [study] cluster and "
        "$DASK_SCHEDULER_ADDRESS); the storage and the tracking store must then be servers "
        "every machine reaches, e.g. those of `head`",
    )
    sweep.set_defaults(run=_sweep)


def _add_check(commands: Any) -> None:
    check = commands.add_parser(
        "check",
        help="validate a sweep file and print what a sweep of it would do, writing nothing",
        description="Validate a sweep file (with --set overrides) and its locations as `sweep` "
        "does, load its data set, and print the resolved study, search space, baselines, "
        "sampler, pruner and locations. Nothing is written. Exit status 2 on an invalid file.",
    )
    check.add_argument("file", help="sweep definition, e.g. sweeps/default.toml")
    check.add_argument("--storage", help="Optuna storage (default: as for sweep)")
    check.add_argument("--tracking-uri", help="MLflow tracking URI (default: as for sweep)")
    check.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="as for sweep"
    )
    check.add_argument("--no-tracking", action="store_true", help="as for sweep")
    check.set_defaults(run=_check)


def _add_studies(commands: Any) -> None:
    studies = commands.add_parser(
        "studies",
        help="every study of a store: its state, trials done of its budget, best value",
        description="List the studies of an MLflow store (never creating one): state "
        "(running, finished, interrupted, failed), trials done of the budget, the best value "
        "of the objective so far and the last change.",
    )
    studies.add_argument("--tracking-uri", help="store to read (default: as for sweep)")
    studies.set_defaults(run=_studies)


def _add_ui(commands: Any) -> None:
    ui = commands.add_parser(
        "ui",
        help="the MLflow UI over the store, on 127.0.0.1",
        description="Start the MLflow UI (and REST API) over the local "
        "store (or --tracking-uri), bound to 127.0.0.1.",
    )
    ui.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    ui.add_argument("--tracking-uri", help="store to browse (default: as for sweep)")
    ui.set_defaults(run=_ui)


def _add_report(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="write reports/<study>/ (tables, figures, CSV and parquet) for studies",
        description="Analyse studies from the MLflow store: a report per study under "
        "reports/<study>/ (also logged to its parent run), and with several studies a "
        "side-by-side comparison under reports/<a>-vs-<b>/.",
    )
    report.add_argument(
        "studies",
        nargs="*",
        metavar="STUDY",
        help="study names (default: every study in the store)",
    )
    report.add_argument("--tracking-uri", help="store to read (default: as for sweep)")
    report.add_argument("--out", default="reports", help="folder for reports (default reports)")
    report.set_defaults(run=_report)


def _add_figures(commands: Any) -> None:
    figures = commands.add_parser(
        "figures",
        help="draw a trial's figures (curves, weights, activations) into its MLflow run",
        description="Draw and log the figures of complete trials from their logged history "
        "and weights. The sweep draws those of the best trials and the baselines by itself.",
    )
    figures.add_argument("study", help="study (MLflow experiment) name")
    figures.add_argument("trials", nargs="+", type=int, metavar="TRIAL", help="trial numbers")
    figures.add_argument("--tracking-uri", help="store (default: as for sweep)")
    figures.set_defaults(run=_figures)


def _add_head(commands: Any) -> None:
    head = commands.add_parser(
        "head",
        help="start the shared services of sweeps run from several processes or machines: "
        "Dask scheduler, Optuna storage proxy, MLflow server",
        description="Start, as child processes, the Dask scheduler, Optuna's gRPC storage "
        "proxy over one storage and an MLflow tracking server with artifact proxying; print the "
        "lines to run elsewhere; stop them all on Ctrl-C. Every service binds to 127.0.0.1 "
        "unless --host says otherwise (with a warning). Exit status 2 when a port is in use.",
    )
    head.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    head.add_argument("--scheduler-port", type=int, default=8786, help="Dask (default 8786)")
    head.add_argument(
        "--storage-port", type=int, default=13000, help="storage proxy (default 13000)"
    )
    head.add_argument("--mlflow-port", type=int, default=5001, help="MLflow (default 5001)")
    head.add_argument(
        "--dir", default="mlruns/head", help="the services' state (default mlruns/head)"
    )
    head.add_argument(
        "--storage",
        help="the storage the proxy serves: an RDB URL, e.g. postgresql://user@host/db, or a "
        "journal file (default: optuna.journal in --dir)",
    )
    head.set_defaults(run=_head)


def _add_worker(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="join a cluster as a Dask worker tuned for the trials (the line head prints)",
        description="Run `dask worker SCHEDULER --nthreads 1 --no-dashboard` with Dask's "
        "profiler off and its event loop's health, memory and system checks slowed down: "
        "under Dask's defaults they take the GIL from the trials often enough to slow their "
        "training by about 15%. Options after the address go to `dask worker` unchanged.",
    )
    worker.add_argument("scheduler", help="the scheduler's address, e.g. tcp://HOST:8786")
    worker.add_argument(
        "dask_options",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="options for dask worker, e.g. --nworkers 4",
    )
    worker.set_defaults(run=_worker)


def _add_proxy(commands: Any) -> None:
    proxy = commands.add_parser(
        "storage-proxy",
        help="serve an Optuna storage over gRPC (head starts it)",
        description="Optuna's gRPC storage proxy over one storage, until stopped: sweeps reach it "
        "with --storage grpc://HOST:PORT.",
    )
    proxy.add_argument(
        "storage",
        help="a journal file, e.g. mlruns/head/optuna.journal, or an RDB URL, e.g. "
        "postgresql://user@host/db",
    )
    proxy.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    proxy.add_argument("--port", type=int, default=13000, help="port (default 13000)")
    proxy.set_defaults(run=_storage_proxy)


def _version() -> str:
    from pipeline import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    import contextlib
    import os

    from pipeline.quiet import quiet_libraries

    args = build_parser().parse_args(argv)
    if not args.verbose:  # Optuna's per-trial lines, MLflow's links: the command says its own
        quiet_libraries()  # in this process and the workers it starts
    if not args.quiet:
        return int(args.run(args))
    with open(os.devnull, "w") as nowhere, contextlib.redirect_stdout(nowhere):
        return int(args.run(args))  # errors go to stderr, which stays
