"""Docker engines: the engine as a host, every container as a workload, Compose projects as services.

    sources:
      - {type: docker, name: nas, url: "ssh://admin@nas.lan"}
      - type: docker
        name: lab
        url: tcp://lab.lan:2376
        tls: {ca: certs/ca.pem, cert: certs/cert.pem, key: certs/key.pem}
      - {type: docker, name: local}        # DOCKER_HOST, else unix:///var/run/docker.sock

Endpoints are read the way the docker CLI reads them: ``unix://``, ``tcp://``
(TLS when ``tls`` is given), ``ssh://`` through the system ``ssh`` client (so
``~/.ssh/config`` and the agent work as they do for ``docker -H ssh://...``),
or through paramiko (``ssh_client: paramiko``: one connection for all calls).

Calls per collection: ``/version``, ``/info``, one ``/containers/json?all=1``
that carries most fields, then one inspect per container for what the list
lacks (health, restart count, exit code, start and finish times),
``concurrency`` at a time, and only for containers that ever ran (a created
container has none of these); ``/services`` only on a swarm manager.

Identity: the engine's ``ID`` from ``/info`` (not the URL, which can change)
and each container's id. Engines on VMs cloned from one template can report the
same ``ID``; it identifies the engine within its source only, so the snapshot
never claims it as the source's identity (that would merge two machines).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inventory.connector import ConfigPath, Connector, SourceConfig
from inventory.errors import SourceError
from inventory.records import Host, Ref, Service, Snapshot, Workload

if TYPE_CHECKING:  # pragma: no cover
    from docker import APIClient

log = logging.getLogger(__name__)

HOST_KIND = "docker-engine"
CONTAINER_KIND = "container"
COMPOSE_PROJECT_KIND = "compose-project"
COMPOSE_SERVICE_KIND = "compose-service"
SWARM_SERVICE_KIND = "swarm-service"

DEFAULT_SOCKET = "/var/run/docker.sock"
_SCHEMES = ("unix", "tcp", "ssh")
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


def default_docker_url() -> str:
    """Where the docker CLI looks first: DOCKER_HOST, else the local socket."""
    return os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"


class DockerTLS(BaseModel):
    """Client TLS for ``tcp://`` endpoints, as ``docker --tlsverify --tlscacert ... --tlscert ... --tlskey ...``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca: ConfigPath | None = None
    cert: ConfigPath | None = None
    key: ConfigPath | None = None
    # False accepts any server certificate (docker --tls without --tlsverify).
    verify: bool = True


    @model_validator(mode="after")
    def _cert_with_key(self) -> DockerTLS:
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both cert and key, or neither")
        return self


class DockerConfig(SourceConfig):
    type: str = "docker"
    url: str = Field(default_factory=default_docker_url)
    tls: DockerTLS | None = None
    # Seconds allowed for each API call.
    timeout: float = Field(default=10.0, gt=0)
    # Container inspects in flight at once.
    concurrency: int = Field(default=8, ge=1, le=64)
    # ssh:// only. "openssh": the system ssh, as the docker CLI does (~/.ssh/config, agent and
    # known_hosts apply), but docker-py starts one ssh process per API call: give the host
    # ControlMaster/ControlPersist in ~/.ssh/config. "paramiko": one SSH connection for all
    # calls; reads Hostname, User, IdentityFile and ProxyCommand of ~/.ssh/config (not Port:
    # docker-py makes it 22 unless the URL names one), and the host must be in known_hosts.
    ssh_client: Literal["openssh", "paramiko"] = "openssh"
    # False: the list call only (one call for any number of containers), without health,
    # restart count, exit code and start times of containers that ran.
    inspect: bool = True

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in _SCHEMES:
            raise ValueError(f"must start with {', '.join(s + '://' for s in _SCHEMES)} (got {value!r})")
        if scheme != "unix" and not urlsplit(value).hostname:
            raise ValueError(f"names no host: {value!r}")
        return value

    @model_validator(mode="after")
    def _tls_needs_tcp(self) -> DockerConfig:
        if self.tls is not None and urlsplit(self.url).scheme != "tcp":
            raise ValueError("tls applies to tcp:// endpoints only")
        return self


def default_local_source(name: str = "local", timeout: float = 1.0) -> DockerConfig | None:
    """The source offered when there is no config at all: a reachable DOCKER_HOST or local socket, else None.

    Cheap (a socket connect, no SDK import). An ``ssh://`` DOCKER_HOST is offered
    without a probe: reaching it means running ssh, which a CLI start must not do.
    DOCKER_TLS_VERIFY / DOCKER_CERT_PATH are honoured as the docker CLI does.
    """
    url = default_docker_url()
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        return None
    if parts.scheme == "unix" and not _reachable_unix(parts.path, timeout):
        return None
    if parts.scheme == "tcp" and not _reachable_tcp(parts.hostname or "", parts.port or 2375, timeout):
        return None
    tls = None
    if parts.scheme == "tcp" and os.environ.get("DOCKER_TLS_VERIFY"):
        cert_dir = Path(os.environ.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
        tls = DockerTLS(ca=cert_dir / "ca.pem", cert=cert_dir / "cert.pem", key=cert_dir / "key.pem")
    return DockerConfig(name=name, url=url, tls=tls)


def _reachable_unix(path: str, timeout: float) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(path)
        return True
    except OSError:
        return False


def _reachable_tcp(host: str, port: int, timeout: float) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


class DockerConnector(Connector):
    type_name = "docker"
    config_model = DockerConfig
    config: DockerConfig

    @classmethod
    def default_sources(cls) -> list[SourceConfig]:
        local = default_local_source()
        return [local] if local is not None else []

    @property
    def _engine_resource(self) -> str:
        return f"engine {self.config.url}"

    def collect(self) -> Snapshot:
        client = self._connect()
        try:
            return self._collect(client)
        finally:
            client.close()

    def _connect(self) -> APIClient:
        import docker

        tls: Any = False
        if self.config.tls is not None:
            settings = self.config.tls
            for path in (settings.ca, settings.cert, settings.key):
                if path is not None and not path.is_file():
                    raise SourceError(self.source_name, self._engine_resource, f"TLS file {path} does not exist")
            tls = docker.tls.TLSConfig(
                client_cert=(str(settings.cert), str(settings.key)) if settings.cert and settings.key else None,
                ca_cert=str(settings.ca) if settings.ca else None,
                verify=settings.verify,
            )
        try:
            # version="auto" asks /version which API the engine speaks (the one extra call).
            client = _client_class()(
                base_url=self.config.url,
                version="auto",
                timeout=self.config.timeout,
                tls=tls,
                max_pool_size=self.config.concurrency,
                use_ssh_client=self.config.ssh_client == "openssh",
            )
        except Exception as exc:
            raise SourceError(self.source_name, self._engine_resource, describe_error(exc, self.config.timeout)) from exc
        if urlsplit(self.config.url).scheme == "unix":
            # No proxy or .netrc can apply to a unix socket; requests would still scan the
            # environment and read ~/.netrc at every call (a millisecond each).
            client.trust_env = False
        return client

    def _collect(self, client: APIClient) -> Snapshot:
        try:
            info = client.info()
        except Exception as exc:
            raise SourceError(self.source_name, self._engine_resource, describe_error(exc, self.config.timeout)) from exc
        engine_id = str(info.get("ID") or "")
        if not engine_id:
            raise SourceError(self.source_name, self._engine_resource, "/info carries no engine ID")
        snapshot = Snapshot()
        snapshot.hosts.append(engine_host(info, engine_id, self.config.url, client.api_version))
        engine = Ref(HOST_KIND, engine_id)

        try:
            listed: list[dict[str, Any]] = client.containers(all=True)
        except Exception as exc:
            # Without the list nothing is known about containers: the snapshot stays incomplete.
            snapshot.fail("containers", describe_error(exc, self.config.timeout))
            return snapshot

        wanted = [c for c in listed if self.config.inspect and needs_inspect(c)]
        inspected = self._inspect(client, wanted, snapshot)
        present = [c for c in listed if c["Id"] not in inspected.vanished]
        for container in present:
            if container["Id"] in inspected.failed:
                continue  # recorded on the snapshot (now incomplete); kept out of the writes
            snapshot.workloads.append(container_workload(container, inspected.details.get(container["Id"]), engine))
        snapshot.services.extend(compose_services(present))
        log.debug("docker source %s: %d containers listed, %d inspected, %d gone before inspect", self.source_name, len(listed), len(wanted), len(inspected.vanished))

        if _swarm_role(info) == "manager":
            try:
                swarm_services = client.services()
            except Exception as exc:
                snapshot.fail("swarm services", describe_error(exc, self.config.timeout))
            else:
                snapshot.services.extend(swarm_service_records(swarm_services, present))
        return snapshot

    def _inspect(self, client: APIClient, containers: list[dict[str, Any]], snapshot: Snapshot) -> _Inspected:
        """Inspect the given containers, ``concurrency`` at a time; failures go on the snapshot."""
        import docker.errors

        def inspect(container_id: str) -> dict[str, Any] | None | BaseException:
            try:
                return dict(client.inspect_container(container_id))
            except docker.errors.NotFound:
                return None  # removed between list and inspect: simply not there
            except Exception as exc:  # collected and reported per container below
                return exc

        result = _Inspected()
        if not containers:
            return result
        workers = min(self.config.concurrency, len(containers))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"docker-{self.source_name}") as pool:
            answers = list(pool.map(inspect, [c["Id"] for c in containers]))
        for container, answer in zip(containers, answers, strict=True):
            if answer is None:
                result.vanished.add(container["Id"])
            elif isinstance(answer, BaseException):
                result.failed.add(container["Id"])
                snapshot.fail(f"container {_container_name(container)} ({container['Id'][:12]})", describe_error(answer, self.config.timeout))
            else:
                result.details[container["Id"]] = answer
        return result


@dataclass
class _Inspected:
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


@functools.cache
def _client_class() -> type[APIClient]:
    """``docker.APIClient`` whose TLS verification is the one this source configures.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a session's CA file (and
    turn ``verify: false`` back on): an engine with its own CA would then fail to verify.
    """
    import docker

    class SourceAPIClient(docker.APIClient):  # type: ignore[misc]
        def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
            settings: dict[str, Any] = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if self.verify is not True:  # a CA file or False, named by the source's tls settings
                settings["verify"] = self.verify
            return settings

    return SourceAPIClient


def describe_error(exc: BaseException, timeout: float) -> str:
    """A one-line reason from an SDK / requests exception, the most telling cause first."""
    import docker.errors
    import requests.exceptions

    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for error in chain:
        if isinstance(error, docker.errors.APIError) and error.response is not None:
            return f"HTTP {error.status_code}: {error.explanation or error.response.reason}"
    for error in chain:
        if isinstance(error, requests.exceptions.SSLError):
            return f"TLS failed: {_innermost_text(error)}"
        if isinstance(error, requests.exceptions.Timeout):
            return f"no answer within {timeout:g} s"
    for error in chain:
        if isinstance(error, requests.exceptions.ConnectionError):
            return f"cannot connect: {_innermost_text(error)}"
    if isinstance(exc, docker.errors.DockerException):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _innermost_text(exc: BaseException) -> str:
    """The OS-level reason buried in urllib3's wrappers ("No such file or directory", "Connection refused")."""
    stack: list[BaseException] = [exc]
    seen: set[int] = set()
    while stack:
        error = stack.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, OSError) and error.strerror:
            return error.strerror
        # urllib3 keeps the socket error as a cause, a context, a .reason or an argument.
        stack.extend(e for e in (error.__cause__, error.__context__, getattr(error, "reason", None)) if isinstance(e, BaseException))
        stack.extend(a for a in error.args if isinstance(a, BaseException))
    return str(exc)


# --- records -------------------------------------------------------------------------------------


def _swarm_role(info: Mapping[str, Any]) -> str:
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
        "swarm_role": _swarm_role(info),
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


def _container_name(container: Mapping[str, Any]) -> str:
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
        {k: v for k, v in {"ip": p.get("IP"), "private": p.get("PrivatePort"), "public": p.get("PublicPort"), "type": p.get("Type")}.items() if v not in (None, "")}
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


def _compose(labels: Mapping[str, str]) -> dict[str, Any] | None:
    project = labels.get(COMPOSE_PROJECT)
    if not project:
        return None
    number = labels.get(COMPOSE_NUMBER)
    compose = {
        "project": project,
        "service": labels.get(COMPOSE_SERVICE),
        "number": int(number) if number and number.isdigit() else None,
        "oneoff": labels.get(COMPOSE_ONEOFF, "False").lower() == "true",
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
    swarm = {k: v for k, v in swarm.items() if v}
    return swarm or None


def _inspected(detail: Mapping[str, Any]) -> dict[str, Any]:
    """What only inspect knows. Values that change at every poll (pid, log path) stay out."""
    state = detail.get("State") or {}
    health = state.get("Health") or {}
    running = bool(state.get("Running"))
    return {
        "health": health.get("Status") or None,
        "restart_count": detail.get("RestartCount"),
        # A created container that never ran has no exit code, whatever the zero says.
        "exit_code": state.get("ExitCode") if state.get("Status") in ("exited", "dead") else None,
        "oom_killed": state.get("OOMKilled") or None,
        "error": state.get("Error") or None,
        "started_at": _timestamp(state.get("StartedAt")),
        "finished_at": None if running else _timestamp(state.get("FinishedAt")),
    }


def container_workload(container: Mapping[str, Any], detail: Mapping[str, Any] | None, engine: Ref) -> Workload:
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
        "created": datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z") if isinstance(created, int) else None,
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
        name=_container_name(container),
        namespace=(compose or {}).get("project") or (swarm or {}).get("stack"),
        status=state,
        host=engine,
        labels=labels,
        attributes={k: v for k, v in attributes.items() if v not in (None, [], {})},
    )


def _group_status(states: list[str]) -> str:
    running = sum(1 for s in states if s == "running")
    if running == len(states):
        return "running"
    return "stopped" if running == 0 else "partial"


def compose_services(containers: Iterable[Mapping[str, Any]]) -> list[Service]:
    """One service per Compose project and one per Compose service in it, with their containers."""
    projects: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for container in containers:
        project = (container.get("Labels") or {}).get(COMPOSE_PROJECT)
        if project:
            projects[project].append(container)
    services: list[Service] = []
    for project, members in sorted(projects.items()):
        by_service: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for container in members:
            by_service[(container.get("Labels") or {}).get(COMPOSE_SERVICE) or ""].append(container)
        first_labels = min(members, key=lambda c: c["Id"]).get("Labels") or {}
        project_attributes = {
            "services": sorted(s for s in by_service if s),
            "working_dir": first_labels.get(COMPOSE_WORKING_DIR),
            "config_files": first_labels.get(COMPOSE_CONFIG_FILES),
            "containers": len(members),
        }
        services.append(
            Service(
                kind=COMPOSE_PROJECT_KIND,
                external_id=project,
                name=project,
                namespace=project,
                status=_group_status([str(c.get("State")) for c in members]),
                members=tuple(Ref(CONTAINER_KIND, c["Id"]) for c in members),
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
                    status=_group_status([str(c.get("State")) for c in service_members]),
                    members=tuple(Ref(CONTAINER_KIND, c["Id"]) for c in service_members),
                    attributes={"project": project, "containers": len(service_members)},
                )
            )
    return services


def swarm_service_records(swarm_services: Iterable[Mapping[str, Any]], containers: Iterable[Mapping[str, Any]]) -> list[Service]:
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
