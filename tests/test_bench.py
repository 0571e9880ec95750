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


def test_the_quality_verdict_compares_medians_and_says_when_within_noise():
    import numpy as np

    from pipeline.quality import _verdict

    pick, peer = np.array([0.90, 0.88, 0.92]), np.array([0.89, 0.87, 0.91])
    assert _verdict(pick, peer, higher_is_better=True) == "beats"  # +0.01 on every seed
    assert _verdict(peer, pick, higher_is_better=True) == "loses"
    assert _verdict(pick, pick, higher_is_better=True) == "matches"
    noisy = np.array([0.95, 0.85, 0.89])  # median 0.89: 0.01 behind, paired sd 0.06
    assert _verdict(noisy, peer + 0.01, higher_is_better=True) == "loses (within noise)"
    losses = np.array([0.01, 0.02, 0.03])  # lower is better for a loss
    assert _verdict(losses, losses + 0.01, higher_is_better=False) == "beats"
