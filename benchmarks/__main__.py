"""``python -m benchmarks PART``:

- speed (the default): the machinery's ratios, the MLflow UI's and the cluster's; cluster: only
  the cluster's;
- quality: the answer on every shipped sweep and on data sets no sweep was written for (init's
  template), 3 sweep seeds each; newdata: those alone; tables: the raw tables among them alone
  (text columns, gaps);
- bigtable: a 200,000-row table through init and a 10-trial sweep (time, memory);
- pruners, samplers: the Wilcoxon pruner, the Gaussian-process sampler, against the shipped
  ones; pareto: the multi-objective samplers against random search (hypervolume, 3 seeds);
- stops: how sweeps end on the cluster (50 started and stopped on the storage proxy, a dead
  sweep's workers freed).
"""

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
            "tables",
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
    if part == "tables":  # the raw tables of newdata alone
        from benchmarks import quality

        quality.main(names=(), tables_only=True)
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
