"""Docker records: the engine as a host, containers as workloads, Compose projects and swarm services as services."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from inventory.records import Host, Ref, Service, Workload

HOST_KIND = "docker-engine"
CONTAINER_KIND = "container"
COMPOSE_PROJECT_KIND = "compose-project"
COMPOSE_SERVICE_KIND = "compose-service"
SWARM_SERVICE_KIND = "swarm-service"

# The engine reports "never" as the zero time of Go.
_ZERO_TIME_PREFIX = "0001-01-01"

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_NUMBER = "com.docker.compose.container-number"
COMPOSE_ONEOFF = "com.docker.compose.oneoff"
COMPOSE_WORKING_DIR = "com.docker.compose.project.working_dir"
COMPOSE_CONFIG_FILES = "com.docker.compose.project.config_files"
SWARM_SERVICE_ID = "com.docker.swarm.service.id"
SWARM_SERVICE_NAME = "com.docker.swarm.service.name"
SWARM_TASK_ID = "com.docker.swarm.task.id"
SWARM_NODE_ID = "com.docker.swarm.node.id"
STACK_NAMESPACE = "com.docker.stack.namespace"


def swarm_role(info: Mapping[str, Any]) -> str:
    swarm = info.get("Swarm") or {}
    state = swarm.get("LocalNodeState") or "inactive"
    if state != "active":
        return state  # inactive | pending | error | locked
    return "manager" if swarm.get("ControlAvailable") else "worker"


def _key_value_labels(items: Iterable[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items or ():
        key, _, value = str(item).partition("=")
        labels[key] = value
    return labels


def _routable(address: str | None) -> str | None:
    """An IP address worth correlating on: a loopback address names every machine."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return None
    return None if parsed.is_loopback or parsed.is_unspecified else str(parsed)


def engine_host(info: Mapping[str, Any], engine_id: str, url: str, api_version: str | None) -> Host:
    swarm = info.get("Swarm") or {}
    # The engine does not report its own addresses: the endpoint's and the swarm's are what is known.
    addresses: list[str] = []
    for candidate in (urlsplit(url).hostname, swarm.get("NodeAddr")):
        address = _routable(candidate)
        if address and address not in addresses:
            addresses.append(address)
    attributes = {
        "endpoint": url,
        "os": info.get("OperatingSystem"),
        "os_type": info.get("OSType"),
        "kernel": info.get("KernelVersion"),
        "architecture": info.get("Architecture"),
        "cpus": info.get("NCPU"),
        "memory_bytes": info.get("MemTotal"),
        "server_version": info.get("ServerVersion"),
        "api_version": api_version,
        "storage_driver": info.get("Driver"),
        "cgroup_version": info.get("CgroupVersion"),
        "swarm_role": swarm_role(info),
        "swarm_node_id": swarm.get("NodeID") or None,
        "swarm_cluster_id": (swarm.get("Cluster") or {}).get("ID"),
    }
    return Host(
        kind=HOST_KIND,
        external_id=engine_id,
        name=str(info.get("Name") or engine_id),
        status="up",
        hostname=info.get("Name") or None,
        addresses=tuple(addresses),
        labels=_key_value_labels(info.get("Labels")),
        attributes={k: v for k, v in attributes.items() if v is not None},
    )


def container_name(container: Mapping[str, Any]) -> str:
    # Names also lists link aliases ("/web/db"); the container's own name has no inner slash.
    names = [n.lstrip("/") for n in container.get("Names") or []]
    own = [n for n in names if "/" not in n]
    return (own or names or [container["Id"][:12]])[0]


def _timestamp(value: str | None) -> str | None:
    if not value or value.startswith(_ZERO_TIME_PREFIX):
        return None
    return value


def _ports(container: Mapping[str, Any]) -> list[dict[str, Any]]:
    ports = [
        {
            k: v
            for k, v in {
                "ip": p.get("IP"),
                "private": p.get("PrivatePort"),
                "public": p.get("PublicPort"),
                "type": p.get("Type"),
            }.items()
            if v not in (None, "")
        }
        for p in container.get("Ports") or []
    ]
    return sorted(ports, key=lambda p: (p.get("private", 0), p.get("type", ""), p.get("ip", ""), p.get("public", 0)))


def _networks(container: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    networks: dict[str, dict[str, Any]] = {}
    for name, settings in sorted(((container.get("NetworkSettings") or {}).get("Networks") or {}).items()):
        settings = settings or {}
        entry = {
            "id": settings.get("NetworkID"),
            "ip": settings.get("IPAddress"),
            "prefix_length": settings.get("IPPrefixLen"),
            "ipv6": settings.get("GlobalIPv6Address"),
            "gateway": settings.get("Gateway"),
            "mac": (settings.get("MacAddress") or "").lower(),
            "aliases": sorted(settings.get("Aliases") or []),
        }
        # EndpointID is left out on purpose: it changes at every start.
        networks[name] = {k: v for k, v in entry.items() if v not in (None, "", 0, [])}
    return networks


def _mounts(container: Mapping[str, Any]) -> list[dict[str, Any]]:
    mounts = [
        {
            k: v
            for k, v in {
                "type": m.get("Type"),
                "name": m.get("Name"),
                "source": m.get("Source"),
                "destination": m.get("Destination"),
                "mode": m.get("Mode"),
                "rw": m.get("RW"),
            }.items()
            if v not in (None, "")
        }
        for m in container.get("Mounts") or []
    ]
    return sorted(mounts, key=lambda m: str(m.get("destination", "")))


def _oneoff(labels: Mapping[str, str]) -> bool:
    """A ``docker compose run`` container: of the project, but no replica of its service."""
    return str(labels.get(COMPOSE_ONEOFF, "False")).lower() == "true"


def _compose(labels: Mapping[str, str]) -> dict[str, Any] | None:
    project = labels.get(COMPOSE_PROJECT)
    if not project:
        return None
    number = labels.get(COMPOSE_NUMBER)
    compose = {
        "project": project,
        "service": labels.get(COMPOSE_SERVICE),
        "number": int(number) if number and number.isdigit() else None,
        "oneoff": _oneoff(labels),
        "working_dir": labels.get(COMPOSE_WORKING_DIR),
        "config_files": labels.get(COMPOSE_CONFIG_FILES),
    }
    return {k: v for k, v in compose.items() if v is not None}


def _swarm(labels: Mapping[str, str]) -> dict[str, str] | None:
    swarm = {
        "service_id": labels.get(SWARM_SERVICE_ID),
        "service_name": labels.get(SWARM_SERVICE_NAME),
        "task_id": labels.get(SWARM_TASK_ID),
        "node_id": labels.get(SWARM_NODE_ID),
        "stack": labels.get(STACK_NAMESPACE),
    }
    return {k: v for k, v in swarm.items() if v} or None


# What only inspect knows: kept as stored (unread) for a container whose inspect failed.
INSPECTED_FIELDS = frozenset(
    f"attributes.{key}"
    for key in ("health", "restart_count", "exit_code", "oom_killed", "error", "started_at", "finished_at")
)
# States that follow a run: the exit code is that run's (a restarting container is between two).
_EXITED_STATES = ("exited", "dead", "restarting")


def _inspected(detail: Mapping[str, Any]) -> dict[str, Any]:
    """What only inspect knows. Values that change at every poll (pid, log path) stay out."""
    state = detail.get("State") or {}
    health = state.get("Health") or {}
    running = bool(state.get("Running"))
    return {
        "health": health.get("Status") or None,
        "restart_count": detail.get("RestartCount"),
        # A created container that never ran has no exit code, whatever the zero says.
        "exit_code": state.get("ExitCode") if state.get("Status") in _EXITED_STATES else None,
        "oom_killed": state.get("OOMKilled") or None,
        "error": state.get("Error") or None,
        "started_at": _timestamp(state.get("StartedAt")),
        "finished_at": None if running and state.get("Status") != "restarting" else _timestamp(state.get("FinishedAt")),
    }


def container_workload(
    container: Mapping[str, Any], detail: Mapping[str, Any] | None, engine: Ref, *, unread: frozenset[str] | None = None
) -> Workload:
    labels = {str(k): str(v) for k, v in (container.get("Labels") or {}).items()}
    compose = _compose(labels)
    swarm = _swarm(labels)
    created = container.get("Created")
    # Inspect came later than the list: where the two disagree (it stopped in between), it is the newer word.
    state = ((detail or {}).get("State") or {}).get("Status") or container.get("State")
    attributes: dict[str, Any] = {
        "image": container.get("Image"),
        "image_id": container.get("ImageID"),
        "command": container.get("Command"),
        "created": datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")
        if isinstance(created, int)
        else None,
        "state": state,
        "network_mode": (container.get("HostConfig") or {}).get("NetworkMode"),
        "ports": _ports(container),
        "networks": _networks(container),
        "mounts": _mounts(container),
        "compose": compose,
        "swarm": swarm,
    }
    if detail:
        attributes.update(_inspected(detail))
    # The human Status text ("Up 5 minutes") changes at every poll: state and health are kept instead.
    return Workload(
        kind=CONTAINER_KIND,
        external_id=str(container["Id"]),
        name=container_name(container),
        namespace=(compose or {}).get("project") or (swarm or {}).get("stack"),
        status=state,
        host=engine,
        labels=labels,
        attributes={k: v for k, v in attributes.items() if v not in (None, [], {})},
        unread=unread or frozenset(),
    )


def _group_status(states: list[str]) -> str:
    running = sum(1 for s in states if s == "running")
    if running == len(states):
        return "running"
    return "stopped" if running == 0 else "partial"


def _is_oneoff(container: Mapping[str, Any]) -> bool:
    return _oneoff(container.get("Labels") or {})


def compose_services(containers: Iterable[Mapping[str, Any]], states: Mapping[str, str | None]) -> list[Service]:
    """One service per Compose project and one per Compose service in it, with their containers.

    ``states`` are the containers' states as their workloads say them (inspect, newer than the
    list), so that a service and its containers never disagree within one sync. One-off
    containers (``docker compose run``) are members of neither the project nor its services and
    count for no status, as ``docker compose ps`` leaves them out; the project counts them apart.
    """
    projects: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for container in containers:
        project = (container.get("Labels") or {}).get(COMPOSE_PROJECT)
        if project:
            projects[project].append(container)

    def status_of(members: list[Mapping[str, Any]]) -> str:
        return _group_status([str(states.get(c["Id"]) or c.get("State")) for c in members])

    services: list[Service] = []
    for project, members in sorted(projects.items()):
        replicas = [c for c in members if not _is_oneoff(c)]
        by_service: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for container in replicas:
            by_service[(container.get("Labels") or {}).get(COMPOSE_SERVICE) or ""].append(container)
        first_labels = min(members, key=lambda c: c["Id"]).get("Labels") or {}
        project_attributes = {
            "services": sorted(s for s in by_service if s),
            "working_dir": first_labels.get(COMPOSE_WORKING_DIR),
            "config_files": first_labels.get(COMPOSE_CONFIG_FILES),
            "containers": len(replicas),
            "one_off_containers": len(members) - len(replicas) or None,
        }
        services.append(
            Service(
                kind=COMPOSE_PROJECT_KIND,
                external_id=project,
                name=project,
                namespace=project,
                # A project of one-offs only (every service down, a `compose run` left) is what they say.
                status=status_of(replicas or members),
                members=tuple(Ref(CONTAINER_KIND, c["Id"]) for c in replicas),
                attributes={k: v for k, v in project_attributes.items() if v is not None},
            )
        )
        for service_name, service_members in sorted(by_service.items()):
            if not service_name:
                continue
            services.append(
                Service(
                    kind=COMPOSE_SERVICE_KIND,
                    external_id=f"{project}/{service_name}",
                    name=service_name,
                    namespace=project,
                    status=status_of(service_members),
                    members=tuple(Ref(CONTAINER_KIND, c["Id"]) for c in service_members),
                    attributes={"project": project, "containers": len(service_members)},
                )
            )
    return services


def swarm_service_records(
    swarm_services: Iterable[Mapping[str, Any]], containers: Iterable[Mapping[str, Any]]
) -> list[Service]:
    """Swarm services as a manager sees them; members are their tasks' containers on this engine."""
    tasks_here: dict[str, list[str]] = defaultdict(list)
    for container in containers:
        service_id = (container.get("Labels") or {}).get(SWARM_SERVICE_ID)
        if service_id:
            tasks_here[service_id].append(container["Id"])
    records = []
    for service in swarm_services:
        spec = service.get("Spec") or {}
        labels = {str(k): str(v) for k, v in (spec.get("Labels") or {}).items()}
        mode = spec.get("Mode") or {}
        replicated = mode.get("Replicated")
        attributes = {
            "mode": "replicated" if replicated is not None else (next(iter(mode), None) or "").lower() or None,
            "replicas": (replicated or {}).get("Replicas"),
            "image": ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image"),
            "stack": labels.get(STACK_NAMESPACE),
        }
        records.append(
            Service(
                kind=SWARM_SERVICE_KIND,
                external_id=str(service["ID"]),
                name=str(spec.get("Name") or service["ID"]),
                namespace=labels.get(STACK_NAMESPACE),
                members=tuple(Ref(CONTAINER_KIND, c) for c in sorted(tasks_here.get(str(service["ID"]), []))),
                labels=labels,
                attributes={k: v for k, v in attributes.items() if v is not None},
            )
        )
    return records
