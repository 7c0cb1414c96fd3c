"""SIGTERM and SIGINT in the sync commands: the handlers never do on the interrupted thread what it may be doing.

A handler runs on the main thread between two of its bytecodes: in the middle of writing a log line,
holding an event's lock, starting a thread. Had it logged or set an event there, it would re-enter
that work (a reentrant write to the log stream) or wait for ever on a lock its own thread holds.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from inventory.cli.sync import stop_on_signals


class _InterruptedWhileWriting(logging.Handler):
    """A log handler on which SIGTERM arrives while the main thread is writing a record."""

    def __init__(self) -> None:
        super().__init__()
        self.writing: str | None = None
        self.reentered: list[str] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        if self.writing is not None and threading.current_thread() is threading.main_thread():
            self.reentered.append(line)  # the signal handler logged in the middle of this thread's write
        self.writing = line
        try:
            if line == "a line the signal lands in":
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # Python runs the handler here, between two bytecodes
                    pass
            self.lines.append(line)
        finally:
            self.writing = None


def test_a_signal_landing_in_a_log_write_is_logged_after_it_on_another_thread() -> None:
    log = logging.getLogger("inventory.cli.sync")
    handler = _InterruptedWhileWriting()
    log.addHandler(handler)
    stopped = threading.Event()
    try:
        with stop_on_signals(stopped.set):
            log.warning("a line the signal lands in")
            assert stopped.wait(10), "the first SIGTERM did not stop the command"
    finally:
        log.removeHandler(handler)
    assert handler.reentered == []
    assert handler.lines[0] == "a line the signal lands in"
    assert any(line.startswith("SIGTERM received: finishing the source in progress") for line in handler.lines)


def test_a_signal_landing_while_the_stop_event_is_held_stops_once_it_is_released() -> None:
    stop_event = threading.Event()
    with stop_on_signals(stop_event.set):
        with stop_event._cond:  # type: ignore[attr-defined]  # the main thread inside the event, as in its wait
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
            assert not stop_event.is_set()
        assert stop_event.wait(10), "the stop waited for ever on a lock the interrupted thread held"


def test_the_previous_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(lambda: None):
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
