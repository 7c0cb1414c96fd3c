"""When to ask an API again: ``Retry-After`` on 429 and 503, bounded, shared by the connectors.

A server that says "too many requests" or "unavailable, come back in N seconds" is having an
ordinary moment, not failing: the call is repeated after the time it names, a few times at
most and never longer than a fixed budget per call, so one throttled list never fails a
source and a server that keeps saying "later" cannot hold a sync for long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

# Per call: how many times it is repeated, and how long all its waits may add up to.
MAX_RETRIES = 3
MAX_RETRY_WAIT = 30.0
# A 429 without Retry-After still means "later"; a 503 without it is an outage, not repeated.
DEFAULT_THROTTLE_WAIT = 1.0
RETRYABLE_STATUSES = frozenset({429, 503})


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """The wait a ``Retry-After`` value names (delta-seconds or an HTTP date), or None if it names none."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


class RetryBudget:
    """The retries left to one call; ``wait_for`` says how long to sleep before the next, or None to give up."""

    def __init__(self, retries: int = MAX_RETRIES, total: float = MAX_RETRY_WAIT) -> None:
        self.retries = retries
        self.total = total
        self.attempts = 0
        self.waited = 0.0

    def wait_for(self, status: int, retry_after: str | None) -> float | None:
        if status not in RETRYABLE_STATUSES or self.attempts >= self.retries:
            return None
        seconds = retry_after_seconds(retry_after)
        if seconds is None:
            if status != 429:
                return None
            seconds = DEFAULT_THROTTLE_WAIT
        if self.waited + seconds > self.total:
            return None
        self.attempts += 1
        self.waited += seconds
        return seconds

    def describe(self) -> str:
        """What was tried, for the error of a call that still failed ("" when nothing was)."""
        if not self.attempts:
            return ""
        return f"still refused after {self.attempts} retries over {self.waited:g}s as Retry-After asked"


class UnansweredInARow:
    """Calls in a row that got no answer at all (timed out, refused, reset): from ``limit`` on, the far side
    counts as gone (``gone`` stays set) and the calls not yet sent are not sent, so a hung server costs about
    one timeout, not one per call. An answer, an error one too, starts the count again. Thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.gone = threading.Event()
        self._lock = threading.Lock()
        self._in_a_row = 0

    def answered(self) -> None:
        with self._lock:
            self._in_a_row = 0

    def unanswered(self) -> None:
        with self._lock:
            self._in_a_row += 1
            if self._in_a_row >= self.limit:
                self.gone.set()
