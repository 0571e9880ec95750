"""The benchmarks' own code runs (their figures are for `make bench`, not for tests)."""

from pipeline import bench


def test_the_seed_task_benchmark_prints_every_candidate(capsys):
    if not bench.SEED_REFERENCE.exists():
        import pytest

        pytest.skip(f"{bench.SEED_REFERENCE} is not beside this clone")
    bench.bench_seed_task(repeats=1)
    out = capsys.readouterr().out
    for name in ("chapter", "float64", "float32", "dropconnect 0.9", "batch norm", "mixup 0.2"):
        assert f"   {name}" in out, out
    assert "final test MSE 0.0576" in out and "before the new options: 283 us" in out
