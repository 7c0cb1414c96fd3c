"""The fake engine's ``/events``: a bounded buffer of event messages and the streams that follow it.

As dockerd does: every event is kept in a buffer of the last ``EVENTS_KEPT`` (all types, in
memory: an engine restart forgets them); ``since`` replays the buffered events at or after it
(nanoseconds, inclusive), ``until`` ends the stream once the engine's clock passes it, and
``filters`` (``type``, ``event``, ``container``) pick what is sent, ``health_status`` matching
``health_status: healthy``. The stream is chunked JSON, one message per line, sent as it happens.

A test can cut every open stream (``cut``: the connection closes mid-response, as when the
engine dies) and forget the buffer (``forget``: what a restarted engine knows).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

EVENTS_KEPT = 256
# Actions matched on their prefix ("health_status: healthy" by "health_status"), as dockerd does.
_FUZZY_ACTIONS = ("health_status", "exec_create", "exec_start")


def parse_time(value: str | None) -> int | None:
    """An API timestamp ("1700000000", "1700000000.123456789") as nanoseconds; None when absent."""
    if not value:
        return None
    seconds, _, fraction = value.partition(".")
    return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9])


@dataclass(frozen=True)
class EventFilter:
    types: frozenset[str]
    actions: frozenset[str]
    containers: frozenset[str]

    @classmethod
    def parse(cls, text: str | None) -> EventFilter:
        filters: Mapping[str, Any] = json.loads(text) if text else {}

        def values(key: str) -> frozenset[str]:
            value = filters.get(key) or []
            # The API takes {"type": ["container"]} and the older {"type": {"container": true}}.
            return frozenset(value if isinstance(value, list) else (k for k, on in value.items() if on))

        return cls(values("type"), values("event"), values("container"))

    def matches(self, message: Mapping[str, Any]) -> bool:
        if self.types and message["Type"] not in self.types:
            return False
        action = str(message["Action"])
        if self.actions and action not in self.actions:
            fuzzy = self.actions & set(_FUZZY_ACTIONS)
            if not any(action.startswith(f"{name}:") for name in fuzzy):
                return False
        if self.containers:
            actor = message["Actor"]
            name = actor["Attributes"].get("name", "")
            if not any(actor["ID"].startswith(c) or name == c for c in self.containers):
                return False
        return True


class EventLog:
    """The buffer, its writers (``emit``) and its readers (``follow``)."""

    def __init__(self) -> None:
        self._buffer: deque[tuple[int, dict[str, Any]]] = deque(maxlen=EVENTS_KEPT)
        self._log: list[dict[str, Any]] = []  # every message, for the live streams
        self._sequence = 0
        self._last_ns = 0
        self._cuts = 0
        self._changed = threading.Condition()
        self.closed = False
        self.following = 0  # streams open now

    def wait_followed(self, timeout: float = 5.0) -> None:
        """Until a stream is open (a test cuts one that is)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.following > 0, timeout):
                raise TimeoutError("nobody follows the fake engine's events")

    def emit(
        self, container_id: str, action: str, *, name: str, image: str, labels: Mapping[str, str], **extra: str
    ) -> dict[str, Any]:
        """Log one container event now (its attributes: image, name, labels, and e.g. exitCode)."""
        with self._changed:
            now = max(time.time_ns(), self._last_ns + 1)  # strictly increasing, as one engine's clock reads
            self._last_ns = now
            message = {
                "status": action,
                "id": container_id,
                "from": image,
                "Type": "container",
                "Action": action,
                "Actor": {"ID": container_id, "Attributes": {**labels, "image": image, "name": name, **extra}},
                "scope": "local",
                "time": now // 1_000_000_000,
                "timeNano": now,
            }
            self._sequence += 1
            self._buffer.append((self._sequence, message))
            self._log.append(message)
            self._changed.notify_all()
            return message

    def cut(self) -> None:
        """Close every open stream without ending its response."""
        with self._changed:
            self._cuts += 1
            self._changed.notify_all()

    def forget(self) -> None:
        """Empty the buffer, as a restarted engine has it."""
        with self._changed:
            self._buffer.clear()

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def follow(self, since: int | None, until: int | None, wanted: EventFilter) -> Iterator[dict[str, Any] | None]:
        """The messages of one stream as they come; None when it is cut (the connection must drop).

        As dockerd: the buffered messages at or after ``since`` first, then every new one as it is
        logged (a live stream gets them all, however many come at once: the buffer bounds replays only).
        """
        with self._changed:
            cuts = self._cuts
            # Without since, only what happens from now on (dockerd replays nothing then).
            replay = [m for _, m in self._buffer] if since is not None else []
            sent = len(self._log)
            self.following += 1
            self._changed.notify_all()
        try:
            yield from (m for m in replay if _within(m, since, until) and wanted.matches(m))
            yield from self._live(cuts, sent, since, until, wanted)
        finally:
            with self._changed:
                self.following -= 1

    def _live(
        self, cuts: int, sent: int, since: int | None, until: int | None, wanted: EventFilter
    ) -> Iterator[dict[str, Any] | None]:
        while True:
            with self._changed:
                batch = [m for m in self._log[sent:] if _within(m, since, until) and wanted.matches(m)]
                sent = len(self._log)
                if not batch:
                    if self._cuts != cuts or self.closed:
                        yield None
                        return
                    if until is not None and time.time_ns() > until:
                        return
                    wait = 0.5 if until is None else min(0.5, max(0.0, (until - time.time_ns()) / 1e9))
                    self._changed.wait(wait)
                    continue
            yield from batch


def _within(message: Mapping[str, Any], since: int | None, until: int | None) -> bool:
    return (since is None or message["timeNano"] >= since) and (until is None or message["timeNano"] <= until)
