"""``python -m benchmarks [speed|cluster|quality|newdata|pruners|samplers|pareto]``: speed (the
default) runs the machinery's ratios, the MLflow UI's and the cluster's; cluster only the
cluster's; quality the answer on every shipped sweep and on data sets no sweep was written for
(init's template), 3 sweep seeds each (newdata: those alone); pruners the Wilcoxon pruner,
samplers the Gaussian-process sampler, against the shipped ones; pareto the multi-objective
samplers against random search on the multi-objective sweep (hypervolume, 3 sweep seeds); stops
how sweeps end on the cluster (50 started and stopped on the storage proxy, a dead sweep's
workers freed); bigtable a 200,000-row table through init and a 10-trial sweep (time, memory)."""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "part",
        nargs="?",
        choices=(
            "speed",
            "cluster",
            "quality",
            "newdata",
            "pruners",
            "samplers",
            "pareto",
            "stops",
            "bigtable",
        ),
        default="speed",
    )
    part = parser.parse_args().part
    from pipeline.quiet import quiet_libraries

    quiet_libraries()  # as the commands do: the benchmarks print their own figures
    if part == "quality":
        from benchmarks import quality

        quality.main()
        return
    if part == "newdata":  # the second half of quality alone
        from benchmarks import quality

        quality.main(names=())
        return
    if part == "bigtable":
        from benchmarks import bigtable

        bigtable.main()
        return
    if part == "stops":
        from benchmarks import stops

        stops.main()
        return
    if part == "pareto":
        from benchmarks import pareto

        pareto.main()
        return
    if part in ("pruners", "samplers"):
        from benchmarks import alternatives

        alternatives.compare(part.removesuffix("s"))
        return
    if part == "speed":
        from benchmarks import speed, ui

        speed.main()
        ui.bench_ui()
    from benchmarks import cluster

    cluster.main()


if __name__ == "__main__":
    main()
