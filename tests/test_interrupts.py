"""pipeline/interrupts.py: SIGTERM as Ctrl-C, and Ctrl-C honoured when a shell passed SIGINT on
as ignored."""

import os
import signal

import pytest

from pipeline.interrupts import SIGINT_STATUS, SIGTERM_STATUS, TerminateAsInterrupt


def test_sigterm_raises_keyboard_interrupt_inside_the_block_and_says_143():
    with TerminateAsInterrupt() as stop, pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
    assert stop.status == SIGTERM_STATUS
    assert TerminateAsInterrupt().status == SIGINT_STATUS


def test_sigint_inherited_as_ignored_is_ctrl_c_inside_the_block_and_ignored_again_after():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `cmd &` in a script starts it
    try:
        with TerminateAsInterrupt(), pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_handler_of_the_caller_s_own_is_left_alone():
    seen = []
    before = signal.signal(signal.SIGINT, lambda *_: seen.append(1))
    try:
        with TerminateAsInterrupt():
            os.kill(os.getpid(), signal.SIGINT)
        assert seen == [1]
    finally:
        signal.signal(signal.SIGINT, before)
