"""The command line: ``python -m pipeline COMMAND ...`` (or ``regsweep``), its options and help;
what each command does is :mod:`pipeline.commands`.

Benchmarks are not part of the package: ``make bench`` runs ``python -m benchmarks``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regsweep" if Path(sys.argv[0]).name == "regsweep" else "python -m pipeline",
        description="Hyperparameter sweeps and experiment tracking for regularised NumPy MLPs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_sweep(subcommands)
    _add_check(subcommands)
    _add_init(subcommands)
    _add_studies(subcommands)
    _add_ui(subcommands)
    _add_dashboard(subcommands)
    _add_report(subcommands)
    _add_figures(subcommands)
    _add_head(subcommands)
    _add_worker(subcommands)
    _add_proxy(subcommands)
    for name in JOINERS:
        subcommands.choices[name].add_argument(
            "--credentials",
            metavar="FILE",
            help="a secure cluster's bundle, written by `head --secure` (also "
            "$REGSWEEP_CREDENTIALS): its scheduler, storage and tracking server are the "
            "defaults, reached over TLS with its certificate and login",
        )
    for command in subcommands.choices.values():  # every subcommand takes them
        loudness = command.add_mutually_exclusive_group()
        loudness.add_argument(
            "-v", "--verbose", action="store_true", help="the libraries' own logs too"
        )
        loudness.add_argument(
            "-q", "--quiet", action="store_true", help="errors only (the exit status says it)"
        )
    return parser


JOINERS = ("sweep", "check", "studies", "dashboard", "report", "figures", "worker")


def _add_sweep(subcommands: Any) -> None:
    sweep = subcommands.add_parser(
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
        metavar="tcp://HOST:PORT|tls://HOST:PORT",
        help="run the trials on the workers of this Dask scheduler (also [study] cluster and "
        "$DASK_SCHEDULER_ADDRESS); the storage and the tracking store must then be servers "
        "every machine reaches, e.g. those of `head`",
    )
    sweep.set_defaults(run=commands.sweep)


def _add_check(subcommands: Any) -> None:
    check = subcommands.add_parser(
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
    check.set_defaults(run=commands.check)


def _add_init(subcommands: Any) -> None:
    init = subcommands.add_parser(
        "init",
        help="write a sweep file for your data: a CSV or a bundled data set",
        description="Write a sweep file with the new-data template (5-fold cross-validation, "
        "scikit-learn's initial weights, the chapter's regularisers and the learning rate "
        "searched, re-runs over 5 seeds, the pick refitted on all non-test data from each and "
        "averaged) for a CSV file or a bundled data set, checked as a sweep file first. "
        "Nothing is written on an error (exit status 2).",
    )
    init.add_argument("data", help="a CSV file's path, or a bundled set: digits, wine, ...")
    init.add_argument("--target", help="the CSV's target column")
    init.add_argument(
        "--task", choices=("classification", "regression"), help="what the CSV's target is"
    )
    init.add_argument("--out", help="the sweep file to write (default sweeps/<data>.toml)")
    init.add_argument("--force", action="store_true", help="replace --out when it exists")
    init.set_defaults(run=commands.init)


def _add_studies(subcommands: Any) -> None:
    studies = subcommands.add_parser(
        "studies",
        help="every study of a store: its state, trials done of its budget, best value",
        description="List the studies of an MLflow store (never creating one): state "
        "(running, finished, interrupted, failed), trials done of the budget, the best value "
        "of the objective so far and the last change.",
    )
    studies.add_argument("--tracking-uri", help="store to read (default: as for sweep)")
    studies.set_defaults(run=commands.studies)


def _add_ui(subcommands: Any) -> None:
    ui = subcommands.add_parser(
        "ui",
        help="the MLflow UI over the store, on 127.0.0.1",
        description="Start the MLflow UI (and REST API) over the local "
        "store (or --tracking-uri), bound to 127.0.0.1.",
    )
    ui.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    ui.add_argument("--tracking-uri", help="store to browse (default: as for sweep)")
    ui.set_defaults(run=commands.ui)


def _add_dashboard(subcommands: Any) -> None:
    dashboard = subcommands.add_parser(
        "dashboard",
        help="optuna-dashboard over the study storage, read-only, on 127.0.0.1",
        description="Serve optuna-dashboard over the Optuna storage (a journal file, an RDB "
        "URL or grpc://) opened as a sweep opens it, with every write refused: safe to "
        "open during a sweep. Bound to 127.0.0.1. Needs the `dashboard` extra.",
    )
    dashboard.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    dashboard.add_argument(
        "--storage", help="Optuna storage (default mlruns/optuna.journal, as for sweep)"
    )
    dashboard.set_defaults(run=commands.dashboard)


def _add_report(subcommands: Any) -> None:
    report = subcommands.add_parser(
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
    report.set_defaults(run=commands.report)


def _add_figures(subcommands: Any) -> None:
    figures = subcommands.add_parser(
        "figures",
        help="draw a trial's figures (curves, weights, activations) into its MLflow run",
        description="Draw and log the figures of complete trials from their logged history "
        "and weights. The sweep draws those of the best trials and the baselines by itself.",
    )
    figures.add_argument("study", help="study (MLflow experiment) name")
    figures.add_argument("trials", nargs="+", type=int, metavar="TRIAL", help="trial numbers")
    figures.add_argument("--tracking-uri", help="store (default: as for sweep)")
    figures.set_defaults(run=commands.figures)


def _add_head(subcommands: Any) -> None:
    head = subcommands.add_parser(
        "head",
        help="start the shared services of sweeps run from several processes or machines: "
        "Dask scheduler, Optuna storage proxy, MLflow server",
        description="Start, as child processes, the Dask scheduler, Optuna's gRPC storage "
        "proxy over one storage and an MLflow tracking server with artifact proxying; print the "
        "lines to run elsewhere; stop them all on Ctrl-C. Every service binds to 127.0.0.1 "
        "unless --host says otherwise. Beyond loopback the services are secure (TLS with client "
        "certificates for Dask and the storage proxy, HTTPS and a login for MLflow) and "
        "credentials.json in --dir is the bundle that joins them; --insecure turns that off, "
        "--secure turns it on for loopback. Dask's own web routes stay on 127.0.0.1. Exit "
        "status 2 when a port is in use.",
    )
    head.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    security = head.add_mutually_exclusive_group()
    security.add_argument(
        "--secure", action="store_true", help="TLS and logins on loopback too (for a trial run)"
    )
    security.add_argument(
        "--insecure",
        action="store_true",
        help="beyond loopback, no TLS and no login: anyone who reaches the machine can run code "
        "on the workers and read or change every study and run",
    )
    head.add_argument(
        "--tls-dir",
        help="the secrets' folder: a certificate authority there (ca.pem, ca-key.pem) is used, "
        "else one is created (default: tls in --dir)",
    )
    head.add_argument("--scheduler-port", type=int, default=8786, help="Dask (default 8786)")
    head.add_argument(
        "--storage-port", type=int, default=13000, help="storage proxy (default 13000)"
    )
    head.add_argument("--mlflow-port", type=int, default=5001, help="MLflow (default 5001)")
    head.add_argument(
        "--dashboard-address",
        default="127.0.0.1:8787",
        metavar="[HOST:]PORT",
        help="the Dask scheduler's web routes (default 127.0.0.1:8787), on loopback alone "
        "whatever --host says, since they have no login: its health check, and with "
        "--dashboard its dashboard; from another machine, through an SSH tunnel",
    )
    head.add_argument(
        "--dashboard",
        action="store_true",
        help="serve Dask's dashboard and its info pages (logs, call stacks, exceptions) on "
        "--dashboard-address",
    )
    head.add_argument(
        "--dir", default="mlruns/head", help="the services' state (default mlruns/head)"
    )
    head.add_argument(
        "--storage",
        help="the storage the proxy serves: an RDB URL, e.g. postgresql://user@host/db, or a "
        "journal file (default: optuna.journal in --dir)",
    )
    head.set_defaults(run=commands.head)


def _add_worker(subcommands: Any) -> None:
    worker = subcommands.add_parser(
        "worker",
        help="join a cluster as a Dask worker tuned for the trials (the line head prints)",
        description="Run `dask worker SCHEDULER --nthreads 1 --no-dashboard` with Dask's "
        "profiler off and its event loop's health, memory and system checks slowed down: "
        "under Dask's defaults they take the GIL from the trials often enough to slow their "
        "training by about 15%. Options after the address go to `dask worker` unchanged.",
    )
    worker.add_argument(
        "scheduler",
        nargs="?",
        help="the scheduler's address, e.g. tcp://HOST:8786 (default: the --credentials bundle's)",
    )
    worker.add_argument(
        "dask_options",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="options for dask worker, e.g. --nworkers 4",
    )
    worker.set_defaults(run=commands.worker)


def _add_proxy(subcommands: Any) -> None:
    proxy = subcommands.add_parser(
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
    proxy.add_argument(
        "--tls-dir",
        help="a secure head's secrets: serve over TLS, only to clients with the cluster's "
        "certificate",
    )
    proxy.set_defaults(run=commands.storage_proxy)


def _version() -> str:
    from pipeline import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    import contextlib
    import os

    from pipeline.quiet import quiet_libraries

    args = build_parser().parse_args(argv)
    if (why := commands.join(args)) is not None:
        print(why, file=sys.stderr)
        return 2
    if not args.verbose:  # Optuna's per-trial lines, MLflow's links: the command says its own
        quiet_libraries()  # in this process and the workers it starts
    if not args.quiet:
        return int(args.run(args))
    with open(os.devnull, "w") as nowhere, contextlib.redirect_stdout(nowhere):
        return int(args.run(args))  # errors go to stderr, which stays
