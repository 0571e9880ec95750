"""Faults of real operations: a torn journal line, a partial append, a full disk (a real tmpfs),
SIGTERM to the sweep and to its process group. Each test fails without the change it covers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from e2e import env, long_sweep, running_trials, start_sweep, study, sweep, wait_for
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from pipeline.config import open_journal, repair
from pipeline.config._journal import scan

TORN = b'{"op_code":5,"worker_id":"w","trial_id":3,"st'  # a record cut short by a crash


def _journal_with_trials(path: Path, n: int) -> list[float]:
    study = optuna.create_study(study_name="s", storage=open_journal(path))
    values = []
    for i in range(n):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, float(i))
        values.append(float(i))
    return values


def _loaded(path: Path) -> list:
    storage = JournalStorage(JournalFileBackend(str(path)))
    return optuna.load_study(study_name="s", storage=storage).get_trials()


def test_a_torn_tail_is_moved_aside_and_every_complete_trial_loads(tmp_path):
    path = tmp_path / "optuna.journal"
    values = _journal_with_trials(path, 3)
    with open(path, "ab") as handle:
        handle.write(TORN)
    message = repair(path)
    assert message is not None and "torn" in message and str(path) in message
    (aside,) = tmp_path.glob("optuna.journal.torn-*")
    assert aside.read_bytes() == TORN and str(aside) in message
    assert path.read_bytes().endswith(b"\n")
    assert [t.value for t in _loaded(path)] == values
    assert repair(path) is None  # nothing torn any more


def test_a_torn_record_an_older_writer_appended_to_is_cut_out_and_the_rest_kept(tmp_path):
    path = tmp_path / "optuna.journal"
    _journal_with_trials(path, 2)
    with open(path, "ab") as handle:
        handle.write(TORN)
    # Optuna's own backend appends after the torn record, gluing the next record to it
    plain = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    plain.set_user_attr("a", 1)  # glued to the torn record
    with pytest.raises(json.JSONDecodeError):  # written on a line of its own, then read:
        plain.set_user_attr("b", 2)  # from here on the file cannot be read by anything
    with pytest.raises(json.JSONDecodeError):
        _loaded(path)
    assert repair(path) is not None
    storage = JournalStorage(JournalFileBackend(str(path)))
    repaired = optuna.load_study(study_name="s", storage=storage)
    assert repaired.user_attrs == {"a": 1, "b": 2}  # the glued record kept
    assert [t.value for t in repaired.trials] == [0.0, 1.0]


def test_a_durable_append_sets_aside_a_torn_tail_first(tmp_path):
    path = tmp_path / "optuna.journal"
    _journal_with_trials(path, 2)
    with open(path, "ab") as handle:  # another writer died in the middle of a record
        handle.write(TORN)
    durable = optuna.load_study(study_name="s", storage=open_journal(path))
    durable.tell(durable.ask(), 5.0)
    assert [t.value for t in _loaded(path)] == [0.0, 1.0, 5.0]
    assert list(tmp_path.glob("optuna.journal.torn-*"))


def test_a_file_that_is_not_a_journal_is_left_alone(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello\nworld\n" + TORN)
    assert not scan(path).is_journal
    assert repair(path) is None and path.read_bytes().endswith(TORN)


@contextlib.contextmanager
def small_disk(folder: Path, mib: int) -> Iterator[Path]:
    """A real tmpfs of ``mib`` MiB mounted at ``folder`` (as root; else the test is skipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path) -> Path:
    """Fill the disk of ``folder`` to the last byte; returns the filler to delete."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for block in (1 << 20, 4096, 1):  # down to the last byte
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * block):
                    pass
    finally:
        os.close(fd)
    return filler


def test_a_durable_append_on_a_full_disk_leaves_no_partial_record(tmp_path):
    with small_disk(tmp_path / "disk", 1) as disk:
        path = disk / "optuna.journal"
        _journal_with_trials(path, 2)
        _fill(disk)
        size = path.stat().st_size
        s = optuna.load_study(study_name="s", storage=open_journal(path))
        with pytest.raises(OSError) as raised:
            s.set_user_attr("note", "x" * 4096)  # more than any free byte left
        assert raised.value.errno == 28
        assert path.stat().st_size == size  # cut back: no partial record behind
        assert [t.value for t in _loaded(path)] == [0.0, 1.0]


@pytest.mark.slow
def test_too_little_free_space_is_refused_before_anything_is_written(tmp_path):
    with small_disk(tmp_path / "disk", 16) as disk:
        done = sweep(disk, "--n-trials", "2")
        assert done.returncode == 2, done.stdout + done.stderr
        assert "MiB free on the disk of" in done.stderr and "at least 64 MiB" in done.stderr
        assert not (disk / "mlruns" / "optuna.journal").exists()


def _full_disk_sweep(folder: Path) -> Path:
    path = folder.parent / "many.toml"
    text = (Path(__file__).resolve().parents[1] / "sweeps" / "smoke.toml").read_text()
    text = text.replace('name = "smoke"', 'name = "many"').replace("n_trials = 8", "n_trials = 40")
    path.write_text(text.replace("max_epochs = 60", "max_epochs = 3000"))
    return path


@pytest.mark.slow
def test_a_full_disk_stops_the_sweep_in_one_line_and_the_same_command_resumes(tmp_path):
    with small_disk(tmp_path / "disk", 96) as disk:
        sweep_file = _full_disk_sweep(disk)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "sweep", str(sweep_file)],
            cwd=disk,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )

        def complete() -> int:
            with contextlib.suppress(Exception):
                trials = study(disk, "many").get_trials(deepcopy=False)
                return sum(t.state == TrialState.COMPLETE for t in trials)
            return 0

        try:
            wait_for(lambda: complete() >= 3, timeout=240, what="three complete trials")
            filler = _fill(disk)
            out, err = proc.communicate(timeout=240)
        finally:
            proc.kill()
        assert proc.returncode == 1, out + err
        assert "no space left on device: free at least 64 MiB on the disk of" in err, err
        assert "run the same command again" in err and "Traceback" not in err + out
        before = {t.number: t.value for t in study(disk, "many").trials if t.value is not None}
        assert len(before) >= 3
        filler.unlink()
        again = sweep(disk, sweep_file=sweep_file, timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr
        after = study(disk, "many").trials
        assert all(after[n].value == v for n, v in before.items())  # nothing completed lost
        counted = [t for t in after if not t.user_attrs.get("interrupted")]
        assert len(counted) == 40 and all(t.state.is_finished() for t in counted)
        assert _running_runs(disk, "many") == []


def _running_runs(folder: Path, name: str) -> list[str]:
    from e2e import client

    c = client(folder)
    experiment = c.get_experiment_by_name(name)
    found = c.search_runs([experiment.experiment_id], max_results=1000)
    return [r.info.run_name for r in found if r.info.status == "RUNNING"]


@pytest.mark.slow
@pytest.mark.parametrize("to_group", [False, True], ids=["the sweep", "its process group"])
def test_sigterm_ends_a_sweep_like_ctrl_c_with_status_143_and_a_rerun_resumes(tmp_path, to_group):
    long = long_sweep(tmp_path)
    proc = start_sweep(tmp_path, sweep_file=long, new_session=True)
    try:
        wait_for(lambda: running_trials(tmp_path, "long") >= 2, what="two running trials")
        sent = time.monotonic()
        if to_group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, output
    assert took < 30, f"{took:.0f} s: more than a scheduler's usual grace period"
    assert "Traceback" not in output
    s = study(tmp_path, "long")
    assert not [t for t in s.trials if t.state == TrialState.RUNNING]
    # every trial that ended did so interrupted, but the chapter's baseline (500 epochs of
    # its own) may complete between the second trial starting and the signal arriving
    ended = [t for t in s.trials if t.state.is_finished()]
    interrupted = [t for t in ended if t.user_attrs.get("interrupted")]
    assert interrupted and all(
        t in interrupted or (t.state == TrialState.COMPLETE and t.user_attrs.get("baseline"))
        for t in ended
    )
    assert _running_runs(tmp_path, "long") == []
    again = sweep(tmp_path, "--set", "fixed.max_epochs=30", sweep_file=long)
    assert again.returncode == 0, again.stdout + again.stderr
    counted = [t for t in study(tmp_path, "long").trials if not t.user_attrs.get("interrupted")]
    assert len(counted) == 4 and all(t.state.is_finished() for t in counted)


@pytest.mark.slow
def test_a_sweep_over_a_torn_journal_repairs_it_and_resumes(tmp_path):
    first = sweep(tmp_path, "--n-trials", "4")
    assert first.returncode == 0, first.stdout + first.stderr
    journal = tmp_path / "mlruns" / "optuna.journal"
    before = {t.number: t.value for t in study(tmp_path).trials}
    with open(journal, "ab") as handle:  # power lost in the middle of an append
        handle.write(TORN)
    again = sweep(tmp_path, "--n-trials", "6")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "repaired the study journal" in again.stdout
    after = study(tmp_path).trials
    assert len(after) == 6 and all(after[n].value == v for n, v in before.items())


@pytest.mark.slow
def test_sigterm_during_the_re_runs_after_the_budget_ends_every_run_and_a_rerun_finishes(
    tmp_path,
):
    slow_end = ["--set", "study.repeats=5", "--set", "fixed.max_epochs=3000"]
    proc = start_sweep(tmp_path, *slow_end, new_session=True)

    def budget_done() -> bool:
        with contextlib.suppress(Exception):
            trials = study(tmp_path).get_trials(deepcopy=False)
            return len(trials) == 8 and all(t.state.is_finished() for t in trials)
        return False

    try:
        wait_for(lambda: budget_done() or proc.poll() is not None, 300, "the end of the budget")
        assert proc.poll() is None, "the sweep ended before its re-runs"
        proc.send_signal(signal.SIGTERM)  # the re-runs over 5 seeds take a while
        output, _ = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, output
    assert "Traceback" not in output
    assert _running_runs(tmp_path, "smoke") == []
    again = sweep(tmp_path, *slow_end, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Chosen:" in again.stdout  # the end done by the next run


def test_a_journal_cut_at_any_byte_of_its_last_append_keeps_every_complete_record(tmp_path):
    whole = tmp_path / "whole.journal"
    _journal_with_trials(whole, 3)
    data = whole.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1  # where the last record begins
    for cut in range(last, len(data)):
        path = tmp_path / f"cut-{cut}.journal"
        path.write_bytes(data[:cut])
        repair(path)
        kept = path.read_bytes()
        assert kept == data[:last], cut  # the complete records, not one byte of the torn one
        storage = JournalStorage(JournalFileBackend(str(path)))
        optuna.load_study(study_name="s", storage=storage).get_trials()  # readable
