"""The command line: ``python -m pipeline {sweep,ui,report,bench} ...``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def _bench(args: argparse.Namespace) -> int:
    from pipeline import bench

    bench.main()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Hyperparameter sweeps and experiment tracking for regularised NumPy MLPs.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench = commands.add_parser(
        "bench", help="speed benchmarks, printed as ratios measured side by side"
    )
    bench.set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
