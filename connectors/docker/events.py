"""Following one engine's ``/events`` (containers only), losing nothing between connections.

The engine keeps its last 256 events (of every type) in memory and replays those at or after
``since`` (nanoseconds, inclusive); ``until`` makes it end the stream once its clock passes it.
The follower asks for windows of ``WINDOW`` seconds, one after the other, each starting
``OVERLAP`` before the previous one ended (an event logged as a window closes may miss it), and
drops what a replay repeats by the event's (timeNano, id, action). So the follower's thread
never blocks for longer than a window: it notices the end of the watch within a second, and an
engine that stops answering within a window plus the source's ``timeout``.

A broken connection (the engine restarted, a network cut) is retried with backoff. When it
answers again the follower replays from the newest event it had seen (its *anchor*): if that
event is still in the engine's buffer, so is everything after it, and the gap is replayed; if
not (a restarted engine remembers nothing, or more than 256 events came in between) the gap
cannot be replayed and the follower says ``LOST``: the watch relists. The engine's clock is
read from ``/info``'s SystemTime, so ``until`` means the same on a remote engine whose clock is off.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from connectors.docker.api import describe_error
from connectors.docker.config import DockerConfig
from inventory.errors import SourceError

if TYPE_CHECKING:  # pragma: no cover
    from docker import APIClient

log = logging.getLogger(__name__)

# The container events that can change what a record says, or tell why it changed.
ACTIONS: Final = (
    "create",
    "start",
    "die",
    "stop",
    "kill",
    "restart",
    "pause",
    "unpause",
    "rename",
    "destroy",
    "health_status",  # the engine matches "health_status: healthy" by this prefix
    "update",
    "oom",
)
# Exec, attach, top, resize... (a health check alone execs every interval) are filtered out by the engine.
FILTERS: Final = json.dumps({"type": ["container"], "event": list(ACTIONS)})
SECOND = 1_000_000_000
WINDOW = 1 * SECOND
OVERLAP = 1 * SECOND
# Reconnecting: the first wait, the longest, and how long an engine may stay unreachable before the
# watch gives up (the core then falls back to full syncs and calls watch again).
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 5.0
GIVE_UP_AFTER = 120.0


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    """One container event: ``action`` without its detail ("health_status" for "health_status: healthy")."""

    container_id: str
    action: str
    time_ns: int
    attributes: Mapping[str, str]
    full_action: str

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.time_ns, self.container_id, self.full_action)

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.time_ns / SECOND, UTC)

    @property
    def health(self) -> str | None:
        return self.full_action.partition(":")[2].strip() or None if self.action == "health_status" else None

    @classmethod
    def parse(cls, message: Mapping[str, Any]) -> ContainerEvent | None:
        """None for what is not a container event with an id and a time (an engine older than API 1.22)."""
        actor = message.get("Actor") or {}
        container_id = str(actor.get("ID") or message.get("id") or "")
        full_action = str(message.get("Action") or message.get("status") or "")
        time_ns = message.get("timeNano")
        if message.get("Type", "container") != "container" or not container_id or not isinstance(time_ns, int):
            return None
        attributes = {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()}
        return cls(container_id, full_action.partition(":")[0], time_ns, attributes, full_action)


class Lost:
    """The follower could not replay a gap: what happened in it is unknown (the watch relists)."""


LOST: Final = Lost()


_SYSTEM_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def engine_time(info: Mapping[str, Any]) -> int | None:
    """``/info``'s SystemTime ("2026-12-06T09:57:59.753086246Z", or with the engine's offset) in nanoseconds."""
    match = _SYSTEM_TIME.match(str(info.get("SystemTime") or ""))
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    seconds = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp()
    return int(seconds) * SECOND + int(((fraction or "") + "000000000")[:9])


class EngineClock:
    """The engine's clock as ours plus an offset, measured when ``/info`` answered."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        reading = engine_time(info)
        self.offset = 0 if reading is None else reading - time.time_ns()

    def now(self) -> int:
        return time.time_ns() + self.offset


def timestamp(time_ns: int) -> str:
    """An API time with nanoseconds ("1700000000.123456789")."""
    return f"{time_ns // SECOND}.{time_ns % SECOND:09d}"


class EventFollower:
    """Follows ``/events`` on its own thread from ``position`` (engine time) on; the watch reads ``queue``.

    The queue carries ``ContainerEvent`` s at or after the position, in the engine's order, each
    once; ``LOST`` when a gap could not be replayed; a ``SourceError`` when the engine stayed
    unreachable for ``GIVE_UP_AFTER`` or refused the call (a socket proxy that forbids /events).
    Either of the last two ends the follower. It owns ``client`` and closes it when it ends.
    """

    def __init__(self, client: APIClient, config: DockerConfig, clock: EngineClock, position: int) -> None:
        self.client = client
        self.config = config
        self.clock = clock
        self.position = position
        self.queue: queue.Queue[ContainerEvent | Lost | SourceError] = queue.Queue()
        # The newest event seen (before the position too): while the engine still holds it, it holds the gap after it.
        self.anchor: ContainerEvent | None = None
        self.windows = 0
        self._seen: dict[tuple[int, str, str], int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"docker-events-{config.name}", daemon=True)

    def start(self) -> EventFollower:
        self._thread.start()
        return self

    def close(self) -> None:
        """End the follower: its thread ends when its window does (within about a second), on its own."""
        self._done.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._follow()
        except SourceError as exc:
            self.queue.put(exc)
        except Exception as exc:  # a bug must end the watch with a reason, not leave it waiting for ever
            log.exception("docker source %s: following events failed", self.config.name)
            self.queue.put(SourceError(self.config.name, "events", f"{type(exc).__name__}: {exc}"))
        finally:
            self.client.close()

    def _follow(self) -> None:
        # The first window replays the engine's whole buffer: what came before the position only names an anchor.
        since = 1
        replaying = False  # after a broken connection: the replay from the anchor must hold the anchor
        broken_since: float | None = None
        delay = BACKOFF_FIRST
        while not self._done.is_set():
            if replaying:  # from the anchor (or the position, without one) to now: the gap, then judged
                since = self.anchor.time_ns if self.anchor is not None else self.position
                until = self.clock.now()
            else:
                until = self.clock.now() + WINDOW
            received: list[ContainerEvent] = []
            try:
                for event in self._window(since, until):
                    if replaying:
                        received.append(event)  # judged once the replay is whole
                    else:
                        self._take(event)
            except SourceError:
                raise
            except Exception as exc:
                now = time.monotonic()
                if broken_since is None:
                    broken_since = now
                    log.info(
                        "docker source %s: event stream broken (%s); reconnecting",
                        self.config.name,
                        describe_error(exc, self.config),
                    )
                elif now - broken_since > GIVE_UP_AFTER:
                    raise SourceError(
                        self.config.name,
                        "events",
                        f"no event stream for {GIVE_UP_AFTER:.0f} s: {describe_error(exc, self.config)}",
                    ) from exc
                replaying = True
                self._done.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            self.windows += 1
            if replaying:
                anchor = self.anchor
                if anchor is None or anchor.key not in {e.key for e in received}:
                    log.info(
                        "docker source %s: the engine no longer holds the events of the gap; relisting",
                        self.config.name,
                    )
                    self.queue.put(LOST)
                    return
                for event in received:
                    self._take(event)
                log.info("docker source %s: event stream resumed, gap replayed", self.config.name)
                replaying, broken_since, delay = False, None, BACKOFF_FIRST
            since = until - OVERLAP
            self._forget_before(since)

    def _window(self, since: int, until: int) -> Iterator[ContainerEvent]:
        """The events of one window as they come; the engine ends the answer when its clock passes ``until``."""
        import docker.errors

        # docker-py's events() sets no read timeout and drops nanoseconds from since: its request helpers are used.
        client: Any = self.client
        params = {"since": timestamp(since), "until": timestamp(until), "filters": FILTERS}
        # A read waits at most for the rest of the window plus the source's timeout: longer is a hung engine.
        read_timeout = max(0.0, (until - self.clock.now()) / SECOND) + self.config.timeout
        response = client._get(
            client._url("/events"), params=params, stream=True, timeout=(self.config.timeout, read_timeout)
        )
        try:
            try:
                client._raise_for_status(response)
            except docker.errors.APIError as exc:
                if exc.status_code is not None and exc.status_code < 500:
                    # Refused, not broken: a socket proxy in front of the engine must allow /events (EVENTS=1).
                    raise SourceError(self.config.name, "events", describe_error(exc, self.config)) from exc
                raise
            pending = b""
            for chunk in response.iter_content(chunk_size=None):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = ContainerEvent.parse(json.loads(line))
                        if event is not None:
                            yield event
        finally:
            response.close()

    def _take(self, event: ContainerEvent) -> None:
        if event.key in self._seen:
            return  # replayed by an overlapping window
        self._seen[event.key] = event.time_ns
        if self.anchor is None or event.time_ns >= self.anchor.time_ns:
            self.anchor = event
        if event.time_ns >= self.position:  # what came before is in the list the watch started from
            self.queue.put(event)

    def _forget_before(self, since: int) -> None:
        """Keep the keys a replay from ``since`` (or from the anchor) can repeat, no more."""
        floor = min(since, self.anchor.time_ns if self.anchor is not None else since)
        if any(t < floor for t in self._seen.values()):
            self._seen = {k: t for k, t in self._seen.items() if t >= floor}
