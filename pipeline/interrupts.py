"""SIGTERM handled as Ctrl-C is. Schedulers (SLURM, Kubernetes, systemd, ``docker stop``) stop a
job with SIGTERM and, after a grace period, SIGKILL: the first SIGTERM raises
``KeyboardInterrupt`` in the main thread, so a sweep stops as after Ctrl-C (trials end as
interrupted at their next check, runs KILLED, the parent ended) and the head stops its services;
a second SIGTERM (or Ctrl-C) raises it again, which leaves at once. The exit status says which
signal stopped the command: 143 (128 + SIGTERM) or 130 (128 + SIGINT).

A command started in the background by a non-interactive shell (``make sweep &`` in a script)
inherits SIGINT as ignored; inside the block it is Ctrl-C again, so that ``kill -INT`` stops it
as a terminal's Ctrl-C would (no ``preexec_fn`` needed in whoever starts it, which would make
Python fork rather than spawn)."""

from __future__ import annotations

import signal
from types import FrameType, TracebackType

SIGINT_STATUS = 130
SIGTERM_STATUS = 143


class TerminateAsInterrupt:
    """``with TerminateAsInterrupt() as stop:`` SIGTERM raises ``KeyboardInterrupt`` inside
    the block; ``stop.status`` is the exit status for an interrupted command."""

    def __init__(self) -> None:
        self.terminated = False
        self._before: object = None
        self._before_int: object = None

    @property
    def status(self) -> int:
        return SIGTERM_STATUS if self.terminated else SIGINT_STATUS

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.terminated = True
        raise KeyboardInterrupt

    def __enter__(self) -> TerminateAsInterrupt:
        self._before = signal.signal(signal.SIGTERM, self._handle)
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            self._before_int = signal.signal(signal.SIGINT, signal.default_int_handler)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        signal.signal(signal.SIGTERM, self._before)  # type: ignore[arg-type]
        if self._before_int is not None:
            signal.signal(signal.SIGINT, self._before_int)  # type: ignore[arg-type]
