"""The Optuna journal file, durable against torn and partial writes.

Optuna's journal is one JSON record a line, appended under a lock file. Power lost in the middle
of an append, a full disk or a writer killed with -9 leaves a record cut short; Optuna then
ignores it while it is the last line, but the next append lands on the same line and from then
on the file cannot be read. Here:

- **on opening** (:func:`repair`, run by the sweep and the head before anything else), a torn
  tail and any torn record that a later append was glued to are moved aside, into
  ``<journal>.torn-<UTC time>`` beside the journal, and named in one line; every complete
  record stays, in order;
- **on appending** (:class:`DurableJournalBackend`), a writer first sets aside a torn tail left
  by another (so nothing is ever glued to it), and a write that fails (``No space left on
  device``) is cut back to where it started before the error goes on, so it leaves no partial
  record behind.

What can be lost is at most the one operation in flight when the writer stopped (a trial's
report, its state, a reservation), never a record that was complete.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.storages.journal._file import get_lock_file

RECORD = b'{"op_code":'  # how every record of Optuna's journal begins (json.dumps, op_code first)
CHUNK = 1 << 16


@dataclass
class Scan:
    """A journal's bytes sorted: its complete records, the torn ones, and whether the file is
    an Optuna journal at all (every complete line holds a record)."""

    kept: bytes
    torn: bytes
    is_journal: bool


def scan(path: Path) -> Scan:
    """Read ``path`` and sort its bytes. A line is a record when it starts with one and holds
    one; a line that holds more began with a torn record, glued to the record that a later
    append wrote after it: the bytes up to that record's start are torn. Bytes after the last
    newline are a torn tail. A line with no record means the file is not a journal."""
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    kept, torn = [], []
    for line in data[:cut].splitlines(keepends=True):
        start = line.rfind(RECORD)
        if start < 0:  # no record in it: another program's file, not a journal
            return Scan(b"", b"", False)
        if start:
            torn.append(line[:start])
        kept.append(line[start:])
    return Scan(b"".join(kept), b"".join(torn) + data[cut:], True)


def repair(path: Path) -> str | None:
    """Move the torn records of the journal at ``path`` aside, under the journal's own lock (no
    writer appends meanwhile); one line saying what was moved where, or None when nothing was
    torn (or the file is not a journal: the location checks say so)."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    lock = JournalFileOpenLock(str(path))
    lock.acquire()
    try:
        found = scan(path)
        if not found.is_journal or not found.torn:
            return None
        aside = _set_aside(path, found.torn)
        fresh = path.with_name(path.name + ".repairing")
        with open(fresh, "wb") as handle:
            handle.write(found.kept)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(fresh, path)  # atomic: readers see the old file or the repaired one
    finally:
        lock.release()
    return (
        f"repaired the study journal {path}: {len(found.torn)} byte(s) of torn records moved "
        f"aside to {aside}; every complete record kept"
    )


def _set_aside(path: Path, torn: bytes) -> Path:
    aside = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    with open(aside, "ab") as handle:
        handle.write(torn)
        handle.flush()
        os.fsync(handle.fileno())
    return aside


class DurableJournalBackend(JournalFileBackend):
    """Optuna's journal file whose appends leave no partial record: under the lock, a torn
    tail another writer left is set aside first (so nothing is glued to it), and a write that
    fails is cut back to where it began before the error goes on."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        payload = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        with get_lock_file(self._lock):
            fd = os.open(self._file_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                start = _drop_torn_tail(Path(self._file_path), fd)
                try:
                    _write_all(fd, payload.encode("utf-8"))
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, start)  # no partial record behind
                    raise
            finally:
                os.close(fd)


def _drop_torn_tail(path: Path, fd: int) -> int:
    """Set aside the bytes after the journal's last newline (a writer stopped in the middle of
    a record); returns where the next record starts."""
    end = os.fstat(fd).st_size
    if end == 0 or os.pread(fd, 1, end - 1) == b"\n":
        return end
    position = end
    while position > 0:  # back to the last newline, a chunk at a time
        position = max(0, position - CHUNK)
        chunk = os.pread(fd, min(CHUNK, end - position), position)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            position += newline + 1
            break
    aside = _set_aside(path, os.pread(fd, end - position, position))
    os.ftruncate(fd, position)
    print(f"warning: a torn record at the end of {path} was moved aside to {aside}", flush=True)
    return position


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def open_journal(path: str | Path) -> JournalStorage:
    """The journal at ``path`` as an Optuna storage, with durable appends and Optuna's own
    lock file (the one other tools must use too, e.g. optuna-dashboard)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = DurableJournalBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
    return JournalStorage(backend)
