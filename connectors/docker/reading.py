"""Reading containers from one engine: the list, the inspects, and the records built from both.

``collect`` (a full sync) and ``watch`` (a container re-read after an event) go through the same
functions, so that a container re-read after an event yields the very record a full sync would:
an unchanged container costs no write.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connectors.docker.api import describe_error, engine_resource, is_transport_error
from connectors.docker.config import DockerConfig
from connectors.docker.records import (
    COMPOSE_PROJECT_KIND,
    COMPOSE_SERVICE_KIND,
    CONTAINER_KIND,
    HOST_KIND,
    INSPECTED_FIELDS,
    SWARM_SERVICE_KIND,
    compose_services,
    container_name,
    container_workload,
    engine_host,
    swarm_role,
    swarm_service_records,
)
from inventory.errors import SourceError
from inventory.records import Ref, Scope, Snapshot, Workload
from inventory.retry import UnansweredInARow

if TYPE_CHECKING:  # pragma: no cover
    from docker import APIClient

log = logging.getLogger("connectors.docker.connector")  # the name collect's messages always had

# The answer of an inspect not sent because the engine had stopped answering.
_ABANDONED = TimeoutError("not sent: the engine had stopped answering")
# Inspects in a row without any answer (timeout, refused, reset) after which the engine counts as gone.
ENGINE_GONE_AFTER = 3
# How many names an error line gives as examples.
EXAMPLES = 5


def count_of(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def examples(names: Sequence[str]) -> str:
    shown = ", ".join(names[:EXAMPLES])
    return shown + (", ..." if len(names) > EXAMPLES else "")


@dataclass
class Inspected:
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    vanished: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)


def needs_inspect(container: Mapping[str, Any]) -> bool:
    """Whether inspect adds anything to the list entry.

    A container that was created and never started has no health, no restart,
    no exit code and no start time: the list says all there is. (A container
    that ran is "exited", never "created" again.)
    """
    return container.get("State") != "created"


@dataclass
class Containers:
    """Containers as listed and inspected: the list entries still there, their details, their records."""

    entries: list[dict[str, Any]]
    details: dict[str, dict[str, Any]]
    workloads: list[Workload]


def read_containers(
    client: APIClient, config: DockerConfig, listed: list[dict[str, Any]], engine: Ref, snapshot: Snapshot
) -> Containers:
    """Inspect what the list cannot tell and build the records (failures go on the snapshot)."""
    wanted = [c for c in listed if config.inspect and needs_inspect(c)]
    inspected = inspect_containers(client, config, wanted, snapshot)
    present = [c for c in listed if c["Id"] not in inspected.vanished]
    workloads = [
        # A container whose inspect failed is still there (listed): what the list says is brought
        # up to date, what only inspect knows keeps its stored value.
        container_workload(
            c,
            inspected.details.get(c["Id"]),
            engine,
            unread=INSPECTED_FIELDS if c["Id"] in inspected.failed else None,
        )
        for c in present
    ]
    return Containers(present, inspected.details, workloads)


def inspect_containers(
    client: APIClient, config: DockerConfig, containers: list[dict[str, Any]], snapshot: Snapshot
) -> Inspected:
    """Inspect the given containers, ``concurrency`` at a time; failures go on the snapshot, summed up by reason.

    An engine that stops answering (timeouts, refused connections) would cost one timeout
    per container: after ``ENGINE_GONE_AFTER`` such failures in a row the inspects not yet
    sent are abandoned, and the whole lot is one error line.
    """
    import docker.errors

    engine = UnansweredInARow(ENGINE_GONE_AFTER)

    def inspect(container_id: str) -> dict[str, Any] | BaseException | None:
        if engine.gone.is_set():
            return _ABANDONED
        try:
            answer = dict(client.inspect_container(container_id))
        except docker.errors.NotFound:
            engine.answered()
            return None  # removed between list and inspect: simply not there
        except Exception as exc:  # collected and reported per reason below
            if is_transport_error(exc):
                engine.unanswered()
            else:
                engine.answered()
            return exc
        engine.answered()
        return answer

    result = Inspected()
    if not containers:
        return result
    if len(containers) == 1:  # an event's one container: no pool for it
        answers = [inspect(containers[0]["Id"])]
    else:
        workers = min(config.concurrency, len(containers))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"docker-{config.name}") as pool:
            answers = list(pool.map(inspect, [c["Id"] for c in containers]))
    failures: dict[str, list[str]] = {}
    for container, answer in zip(containers, answers, strict=True):
        if answer is None:
            result.vanished.add(container["Id"])
        elif isinstance(answer, BaseException):
            result.failed.add(container["Id"])
            reason = (
                "engine unreachable"
                if answer is _ABANDONED or (engine.gone.is_set() and is_transport_error(answer))
                else describe_error(answer, config, call="")  # the line says: inspect
            )
            failures.setdefault(reason, []).append(container_name(container))
        else:
            result.details[container["Id"]] = answer
    for reason, names in failures.items():
        snapshot.fail(
            "containers", f"inspect failed for {count_of(len(names), 'container')} ({reason}): {examples(names)}"
        )
    return result


@dataclass
class EngineRead:
    """A full read of one engine: the snapshot ``collect`` returns, and what ``watch`` follows on from."""

    snapshot: Snapshot
    engine: Ref
    info: dict[str, Any]
    # None: the container list failed (nothing is known about containers).
    containers: Containers | None


def read_engine(client: APIClient, config: DockerConfig) -> EngineRead:
    """``/info``, every container (list, inspects), Compose projects and swarm services: a full sync's snapshot."""
    try:
        info = dict(client.info())
    except Exception as exc:
        raise SourceError(config.name, engine_resource(config), describe_error(exc, config)) from exc
    engine_id = str(info.get("ID") or "")
    if not engine_id:
        raise SourceError(config.name, engine_resource(config), "/info carries no engine ID")
    snapshot = Snapshot()
    snapshot.hosts.append(engine_host(info, engine_id, config.url, client.api_version))
    snapshot.read(Scope("host", HOST_KIND))
    engine = Ref(HOST_KIND, engine_id)

    try:
        listed: list[dict[str, Any]] = client.containers(all=True)
    except Exception as exc:
        # Without the list nothing is known about containers: the snapshot stays incomplete.
        snapshot.fail("containers", describe_error(exc, config))
        return EngineRead(snapshot, engine, info, None)

    containers = read_containers(client, config, listed, engine, snapshot)
    snapshot.workloads.extend(containers.workloads)
    snapshot.read(Scope("workload", CONTAINER_KIND))
    snapshot.services.extend(
        compose_services(containers.entries, {w.external_id: w.status for w in containers.workloads})
    )
    snapshot.read(Scope("service", COMPOSE_PROJECT_KIND))
    snapshot.read(Scope("service", COMPOSE_SERVICE_KIND))
    log.debug(
        "docker source %s: %d containers listed, %d inspected, %d gone before inspect",
        config.name,
        len(listed),
        len(containers.details),
        len(listed) - len(containers.entries),
    )

    if swarm_role(info) == "manager":
        read_swarm_services(client, config, containers.entries, snapshot)
    else:
        snapshot.read(Scope("service", SWARM_SERVICE_KIND))  # none here: the ones known before are gone
    return EngineRead(snapshot, engine, info, containers)


def read_swarm_services(
    client: APIClient, config: DockerConfig, entries: Sequence[Mapping[str, Any]], snapshot: Snapshot
) -> None:
    """A swarm manager's services, their members the tasks' containers on this engine (a complete scope)."""
    try:
        swarm_services = client.services()
    except Exception as exc:
        snapshot.fail("swarm services", describe_error(exc, config))
    else:
        snapshot.services.extend(swarm_service_records(swarm_services, entries))
        snapshot.read(Scope("service", SWARM_SERVICE_KIND))
