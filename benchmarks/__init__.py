"""Benchmarks of the pipeline, outside the shipped package: ``make bench`` (speed, then the
cluster against the local path) and ``make bench-quality`` (the answer on every shipped data
set). Each prints ratios measured side by side in one run. ``loopback`` starts the head, Dask
workers and a PostgreSQL server on this machine, for the benchmarks and the end-to-end tests."""
