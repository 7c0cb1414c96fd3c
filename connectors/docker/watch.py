"""``DockerConnector.watch``: an engine's container events as deltas, each change with the event that made it.

It reads the engine's clock, starts following ``/events`` from that moment (connectors/docker/events.py),
reads everything (``read_engine``, the snapshot ``collect`` builds) and yields that. Events
are gathered for ``BATCH_DELAY`` after the first of a burst; then each container they name is
listed (``/containers/json`` filtered by id) and inspected, and its record is built by the very
code ``collect`` uses, so that an event that changed nothing costs no write. A destroyed
container is deleted; the Compose project and service of a changed container are rebuilt from
the containers known (one-offs counted apart, as ``collect`` does), and deleted once empty.

Causes (``CauseKind.DOCKER_EVENT``): the last client action of the burst for a container (stop,
kill, restart, rename, update, pause, unpause, create, destroy), else its last event (die, start,
oom, health_status), with ``exitCode``, ``signal`` and ``health`` where the events say them.
A start that the restart policy made (die, then start with no client restart; the engine counts
it in RestartCount, which a client's start or restart resets) is a ``restart`` ``by`` the policy,
``inferred``: the engine does not say so, the count does.

When the follower loses a gap (a restarted engine), the watch reads everything again and yields it
as a full snapshot; while the engine cannot be read it retries with backoff, and after
``GIVE_UP_AFTER`` it raises ``SourceError``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from connectors.docker.api import describe_error, engine_resource, open_client
from connectors.docker.config import DockerConfig
from connectors.docker.events import (
    BACKOFF_FIRST,
    BACKOFF_MAX,
    GIVE_UP_AFTER,
    SECOND,
    ContainerEvent,
    EngineClock,
    EventFollower,
    Lost,
    engine_time,
)
from connectors.docker.reading import EngineRead, read_containers, read_engine, read_swarm_services
from connectors.docker.records import (
    COMPOSE_PROJECT,
    COMPOSE_PROJECT_KIND,
    COMPOSE_SERVICE_KIND,
    CONTAINER_KIND,
    SWARM_SERVICE_ID,
    compose_services,
    swarm_role,
)
from inventory.cause import Cause, CauseKind
from inventory.errors import SourceError
from inventory.records import Snapshot

if TYPE_CHECKING:  # pragma: no cover
    from docker import APIClient

log = logging.getLogger(__name__)
T = TypeVar("T")

# Seconds events are gathered after the first of a burst: a `docker stop` is kill, die and stop within
# milliseconds, and one delta says it (at most a few deltas a second, however fast events come).
BATCH_DELAY = 0.25
# Seconds a container's events may wait for those still to come when its state is not yet what they say.
HOLD = 2.0
# The longest wait for the next event before ``stop`` is looked at again: what a stop waits at most here (ten
# wake-ups a second of an idle watch cost nothing; a loop's shutdown or a test's close waited up to 0.5 s).
STOP_CHECK = 0.1
# Actions a client asks for (the others, die, start, oom, health_status, are what follows or what the engine does).
CLIENT_ACTIONS = frozenset({"create", "stop", "kill", "restart", "pause", "unpause", "rename", "update", "destroy"})
RESTART_POLICY = "restart policy"


class _Relist(Exception):
    """What the watch knows may be behind the engine: read everything again."""


def follow(config: DockerConfig, stop: threading.Event) -> Iterator[Snapshot]:
    client = open_client(config)
    try:
        yield from _Watch(config, client).run(stop)
    finally:
        client.close()


class _Watch:
    def __init__(self, config: DockerConfig, client: APIClient) -> None:
        self.config = config
        self.client = client
        self.read: EngineRead | None = None
        # The containers as last listed, their records' statuses, and each Compose project's service keys:
        # a changed container's project is rebuilt from these, as collect builds it from the whole list.
        self.entries: dict[str, dict[str, Any]] = {}
        self.states: dict[str, str | None] = {}
        self.groups: dict[str, set[tuple[str, str]]] = {}
        # The exit code of each container's last die, for the start that follows it in a later batch.
        self.exit_codes: dict[str, int] = {}

    def run(self, stop: threading.Event) -> Iterator[Snapshot]:
        while not stop.is_set():
            before = time.time_ns()
            info = self._retrying(stop, self._info)
            if info is None:
                return
            # Following starts before the list: what changes while the list is read (thousands of inspects
            # may take seconds) comes live, not from the engine's memory of its last 256 events. The position
            # is the engine's clock before the list; without one (an old engine), ours a second before we
            # asked: a few events seen twice cost nothing, one missed would.
            position = engine_time(info) or before - SECOND
            follower = EventFollower(
                open_client(self.config, version=self.client.api_version), self.config, EngineClock(info), position
            ).start()
            try:
                read = self._retrying(stop, self._relist)
                if read is None:
                    return
                yield read.snapshot
                yield from self._deltas(follower, stop)
            except _Relist:
                continue
            finally:
                follower.close()
            return

    def _retrying(self, stop: threading.Event, action: Callable[[], T]) -> T | None:
        """``action`` again with backoff while the engine cannot be read; None once ``stop`` is set."""
        started = time.monotonic()
        delay = BACKOFF_FIRST
        while not stop.is_set():
            try:
                return action()
            except SourceError:
                if time.monotonic() - started > GIVE_UP_AFTER:
                    raise
                stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)
        return None

    def _info(self) -> dict[str, Any]:
        try:
            return dict(self.client.info())
        except Exception as exc:
            raise SourceError(self.config.name, engine_resource(self.config), describe_error(exc, self.config)) from exc

    def _relist(self) -> EngineRead:
        """Everything, as collect reads it."""
        read = read_engine(self.client, self.config)
        if read.containers is None:
            raise SourceError(self.config.name, "containers", "; ".join(read.snapshot.errors))
        self.read = read
        self.entries = {e["Id"]: e for e in read.containers.entries}
        self.states = {w.external_id: w.status for w in read.containers.workloads}
        self.groups = {}
        for service in read.snapshot.services:
            if service.kind in (COMPOSE_PROJECT_KIND, COMPOSE_SERVICE_KIND) and service.namespace:
                self.groups.setdefault(service.namespace, set()).add((service.kind, service.external_id))
        return read

    def _deltas(self, follower: EventFollower, stop: threading.Event) -> Iterator[Snapshot]:
        pending: dict[str, list[ContainerEvent]] = {}
        arrived: dict[str, float] = {}  # when each pending container's first event came
        first: float | None = None
        while not stop.is_set():
            wait = STOP_CHECK if first is None else max(0.0, min(STOP_CHECK, first + BATCH_DELAY - time.monotonic()))
            try:
                item = follower.queue.get(timeout=wait)
            except queue.Empty:
                item = None
            if isinstance(item, SourceError):
                raise item
            if isinstance(item, Lost):
                raise _Relist
            if item is not None:
                pending.setdefault(item.container_id, []).append(item)
                arrived.setdefault(item.container_id, time.monotonic())
                first = first or time.monotonic()
            if first is not None and time.monotonic() >= first + BATCH_DELAY and not stop.is_set():
                held = {cid for cid, at in arrived.items() if time.monotonic() - at < HOLD}
                delta, carried = self.delta(pending, held)
                pending = {cid: pending[cid] for cid in carried}
                arrived = {cid: arrived[cid] for cid in carried}
                first = time.monotonic() if carried else None
                if delta.object_count or delta.deleted or delta.errors:
                    yield delta

    def delta(
        self, batch: Mapping[str, Sequence[ContainerEvent]], holdable: set[str] | frozenset[str] = frozenset()
    ) -> tuple[Snapshot, set[str]]:
        """The changes of one burst: each container named re-read, each destroyed one deleted, their groups rebuilt.

        A container of ``holdable`` whose state is not yet what its last event says (stopped by a
        `docker restart` whose start is still to come, found running again; gone with its destroy
        event still to come) is left out and returned, to be read again with the events still to
        come: its cause is the whole sequence's.
        """
        assert self.read is not None
        delta = Snapshot.changes()
        destroyed = {cid for cid, events in batch.items() if any(e.action == "destroy" for e in events)}
        alive = [cid for cid in batch if cid not in destroyed]
        projects = {
            project
            for cid, events in batch.items()
            for project in (_label(self.entries.get(cid), COMPOSE_PROJECT), events[-1].attributes.get(COMPOSE_PROJECT))
            if project
        }
        swarm = any(
            _label(self.entries.get(cid), SWARM_SERVICE_ID) or events[-1].attributes.get(SWARM_SERVICE_ID)
            for cid, events in batch.items()
        )
        listed: list[dict[str, Any]] = []
        if alive:
            try:
                listed = [c for c in self.client.containers(all=True, filters={"id": alive}) if c["Id"] in batch]
            except Exception as exc:
                # These events are taken: what they changed is known only by reading everything again.
                log.info(
                    "docker source %s: re-reading containers after events failed (%s); relisting",
                    self.config.name,
                    describe_error(exc, self.config),
                )
                raise _Relist from exc
        containers = read_containers(self.client, self.config, listed, self.read.engine, delta)
        unsettled = {
            w.external_id
            for w in containers.workloads
            if w.external_id in holdable and not _settled(batch[w.external_id], w.status)
        }
        # Gone before its destroy event came (`docker rm -f` is kill, die, destroy): the destroy says why.
        listed_now = {e["Id"] for e in containers.entries}
        unsettled.update(cid for cid in alive if cid in holdable and cid not in listed_now)
        if unsettled:
            containers.workloads = [w for w in containers.workloads if w.external_id not in unsettled]
            containers.entries = [e for e in containers.entries if e["Id"] not in unsettled]
            batch = {cid: events for cid, events in batch.items() if cid not in unsettled}
        causes = {cid: self._cause(events, containers.details.get(cid)) for cid, events in batch.items()}
        for workload in containers.workloads:
            delta.workloads.append(workload)
            delta.attribute("workload", workload, causes[workload.external_id])
        present = {e["Id"]: e for e in containers.entries}
        for entry in containers.entries:
            projects.update(p for p in [_label(entry, COMPOSE_PROJECT)] if p)
        self.entries.update(present)
        self.states.update({w.external_id: w.status for w in containers.workloads})
        for cid in batch:
            if cid in present:
                continue
            # Destroyed, or gone between the event and the list: the engine says it is not there.
            delta.delete("workload", CONTAINER_KIND, cid, causes[cid])
            self.entries.pop(cid, None)
            self.states.pop(cid, None)
            self.exit_codes.pop(cid, None)
        self._rebuild_groups(projects, batch, causes, delta)
        if swarm and swarm_role(self.read.info) == "manager":
            read_swarm_services(self.client, self.config, list(self.entries.values()), delta)
        return delta, unsettled

    def _rebuild_groups(
        self,
        projects: set[str],
        batch: Mapping[str, Sequence[ContainerEvent]],
        causes: Mapping[str, Cause],
        delta: Snapshot,
    ) -> None:
        """The Compose projects (and their services) of the changed containers, from every container known."""
        if not projects:
            return
        members: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entry in self.entries.values():
            project = _label(entry, COMPOSE_PROJECT)
            if project in projects:
                members[project].append(entry)
        for project in sorted(projects):
            services = compose_services(members.get(project, []), self.states)
            keys = {(s.kind, s.external_id) for s in services}
            changed = [
                cid
                for cid, events in batch.items()
                if project
                in (_label(self.entries.get(cid), COMPOSE_PROJECT), events[-1].attributes.get(COMPOSE_PROJECT))
            ]
            # One container changed: the group changed because of what happened to it.
            cause = causes[changed[0]] if len(changed) == 1 else None
            for service in services:
                delta.services.append(service)
                if cause is not None:
                    delta.attribute("service", service, cause)
            for kind, external_id in sorted(self.groups.get(project, set()) - keys):
                delta.delete("service", kind, external_id, cause)
            if keys:
                self.groups[project] = keys
            else:
                self.groups.pop(project, None)

    def _cause(self, events: Sequence[ContainerEvent], detail: Mapping[str, Any] | None) -> Cause:
        cid = events[-1].container_id
        facts: dict[str, Any] = {}
        for event in events:
            if event.action == "die" and event.attributes.get("exitCode", "").lstrip("-").isdigit():
                facts["exitCode"] = self.exit_codes[cid] = int(event.attributes["exitCode"])
            elif event.action == "kill" and "signal" in event.attributes:
                signal = event.attributes["signal"]
                facts["signal"] = int(signal) if signal.isdigit() else signal
            elif event.action == "health_status" and event.health:
                facts["health"] = event.health
            elif event.action == "oom":
                facts["oom"] = True
        started = [i for i, e in enumerate(events) if e.action == "start"]
        clients = [i for i, e in enumerate(events) if e.action in CLIENT_ACTIONS]
        if started and not (clients and clients[-1] > started[-1]) and _restarted_by_policy(events, detail):
            facts.setdefault("exitCode", self.exit_codes.get(cid))
            facts["by"] = RESTART_POLICY
            facts["restart_count"] = (detail or {}).get("RestartCount")
            start = events[started[-1]]
            return Cause(
                CauseKind.DOCKER_EVENT,
                action="restart",
                at=start.at,
                inferred=True,
                detail={k: v for k, v in facts.items() if v is not None},
            )
        chosen = events[clients[-1]] if clients else events[-1]
        return Cause(CauseKind.DOCKER_EVENT, action=chosen.action, at=chosen.at, detail=facts)


def _settled(events: Sequence[ContainerEvent], state: str | None) -> bool:
    """Whether the container's state is what its last state-changing event says (else more events are coming)."""
    last = next((e for e in reversed(events) if e.action in _EXPECTED_STATES), None)
    return last is None or state is None or state in _EXPECTED_STATES[last.action]


_STOPPED = frozenset({"exited", "dead", "restarting", "created", "removing"})
_EXPECTED_STATES: Mapping[str, frozenset[str]] = {
    "die": _STOPPED,
    "stop": _STOPPED,
    "start": frozenset({"running", "paused"}),
    "restart": frozenset({"running", "paused"}),
    "unpause": frozenset({"running"}),
    "pause": frozenset({"paused"}),
}


def _restarted_by_policy(events: Sequence[ContainerEvent], detail: Mapping[str, Any] | None) -> bool:
    """A start the restart policy made: no client restart, a policy set, and a restart count (a client resets it)."""
    if detail is None or any(e.action == "restart" for e in events):
        return False
    policy = ((detail.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
    return policy != "no" and int(detail.get("RestartCount") or 0) > 0


def _label(entry: Mapping[str, Any] | None, name: str) -> str | None:
    return ((entry or {}).get("Labels") or {}).get(name) or None
