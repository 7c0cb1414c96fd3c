"""When a collection must stop asking its source: its deadline, or the runner abandoning it.

A collection runs on threads the runner cannot kill. Without a shared notion of "time is up"
an abandoned collection went on making every call it had planned (a thousand guests at 2 s
each), its worker threads kept ``sync --once`` from exiting, and in the loop abandoned
collections piled up under the next runs of their source. So every connector's client asks
its ``Cutoff`` before each call (``check``: a call past the cutoff is never sent), bounds each
call's timeout by the time left (``timeout``: a call sent just before the deadline ends
shortly after it), and sleeps (back-offs, Retry-After, rate limits) through ``sleep``, which
wakes when the collection is abandoned. A cutoff with no deadline (a tool call, ``check``)
bounds nothing.
"""

from __future__ import annotations

import threading
import time

from inventory.errors import SourceApiError
from inventory.timeutil import format_seconds

# A call sent just before the deadline may still take this long past it to answer.
CALL_GRACE = 1.0
# How every reason for a call the cutoff kept back begins (the runner folds them into one line).
NOT_SENT = "not sent: the collection"


class CollectionAbandoned(SourceApiError):
    """A call was not sent: the collection's deadline passed, or the runner abandoned it."""


class Cutoff:
    """The end of one collection: ``start(seconds)`` sets its deadline, ``abandon()`` ends it now. Thread-safe."""

    def __init__(self) -> None:
        self.abandoned = threading.Event()
        self._ends_at: float | None = None
        self._seconds: float | None = None

    def start(self, seconds: float) -> None:
        """The collection starts now and may take ``seconds``."""
        self._seconds = seconds
        self._ends_at = time.monotonic() + seconds

    def abandon(self) -> None:
        self.abandoned.set()

    def remaining(self) -> float | None:
        """Seconds left before the deadline (0 once abandoned); None when there is no deadline."""
        if self.abandoned.is_set():
            return 0.0
        if self._ends_at is None:
            return None
        return max(0.0, self._ends_at - time.monotonic())

    @property
    def passed(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def reason(self) -> str:
        if self._seconds is not None:
            return f"{NOT_SENT} passed its deadline ({format_seconds(self._seconds)})"
        return f"{NOT_SENT} was abandoned"

    def check(self) -> None:
        """Raise ``CollectionAbandoned`` when no further call may be sent."""
        if self.passed:
            raise CollectionAbandoned(self.reason())

    def timeout(self, configured: float) -> float:
        """A call's timeout: the configured one, but never reaching past the deadline by more than CALL_GRACE."""
        left = self.remaining()
        if left is None:
            return configured
        return max(0.001, min(configured, left + CALL_GRACE))

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a back-off, a Retry-After), but no longer than the collection may run; then ``check``."""
        left = self.remaining()
        if left is not None:
            seconds = min(seconds, left)
        if seconds > 0:
            self.abandoned.wait(seconds)
        self.check()
