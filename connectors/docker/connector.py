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

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from connectors.docker.api import describe_error, engine_resource, is_transport_error, open_client
from connectors.docker.config import TYPE_NAME, DockerConfig, default_local_source
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
from inventory.connector import Connector, KindVocabulary, SourceConfig, StarterSource, StatusVocabulary
from inventory.errors import SourceError
from inventory.records import Ref, Scope, Snapshot
from inventory.retry import UnansweredInARow

if TYPE_CHECKING:  # pragma: no cover
    from docker import APIClient

    from inventory.policy.tools import ToolSpec

log = logging.getLogger(__name__)


class DockerConnector(Connector):
    type_name = TYPE_NAME
    config_model = DockerConfig
    sdk_modules = ("docker", "docker.errors", "requests")
    # An engine is one runtime on a machine: losing it takes its containers, not the machine.
    runtime = True
    config: DockerConfig
    # Container states (the engine's own words), health, and the Compose / swarm group states.
    statuses: ClassVar[StatusVocabulary] = StatusVocabulary(
        running={"running", "up", "healthy"},
        stopped={"exited", "paused", "created", "dead", "stopped"},
        failed={"unhealthy", "restarting"},
    )
    kinds: ClassVar[KindVocabulary] = KindVocabulary(
        ("container", "containers"),
        ("docker-engine", "engine"),
        ("compose-project", "project"),
        ("compose-service",),
        ("swarm-service",),
    )

    @classmethod
    def default_sources(cls) -> list[SourceConfig]:
        local = default_local_source()
        return [local] if local is not None else []

    @classmethod
    def starter_sources(cls) -> list[StarterSource]:
        """The Docker engine the docker CLI would use, when one answers."""
        return [
            StarterSource("docker-local", {"url": url}, f"a Docker engine answering at {url}")
            for url in (str(getattr(source, "url", "")) for source in cls.default_sources())
        ]

    @classmethod
    def tools(cls) -> Sequence[ToolSpec]:
        from connectors.docker.tools import TOOLS

        return TOOLS

    def collect(self) -> Snapshot:
        client = open_client(self.config, self.cutoff)
        try:
            return self._collect(client)
        finally:
            client.close()

    def _collect(self, client: APIClient) -> Snapshot:
        try:
            info = client.info()
        except Exception as exc:
            raise SourceError(self.source_name, engine_resource(self.config), describe_error(exc, self.config)) from exc
        engine_id = str(info.get("ID") or "")
        if not engine_id:
            raise SourceError(self.source_name, engine_resource(self.config), "/info carries no engine ID")
        snapshot = Snapshot()
        snapshot.hosts.append(engine_host(info, engine_id, self.config.url, client.api_version))
        snapshot.read(Scope("host", HOST_KIND))
        engine = Ref(HOST_KIND, engine_id)

        try:
            listed: list[dict[str, Any]] = client.containers(all=True)
        except Exception as exc:
            # Without the list nothing is known about containers: the snapshot stays incomplete.
            snapshot.fail("containers", describe_error(exc, self.config))
            return snapshot

        wanted = [c for c in listed if self.config.inspect and needs_inspect(c)]
        inspected = self._inspect(client, wanted, snapshot)
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
        snapshot.workloads.extend(workloads)
        snapshot.read(Scope("workload", CONTAINER_KIND))
        snapshot.services.extend(compose_services(present, {w.external_id: w.status for w in workloads}))
        snapshot.read(Scope("service", COMPOSE_PROJECT_KIND))
        snapshot.read(Scope("service", COMPOSE_SERVICE_KIND))
        log.debug(
            "docker source %s: %d containers listed, %d inspected, %d gone before inspect",
            self.source_name,
            len(listed),
            len(wanted),
            len(inspected.vanished),
        )

        if swarm_role(info) == "manager":
            try:
                swarm_services = client.services()
            except Exception as exc:
                snapshot.fail("swarm services", describe_error(exc, self.config))
            else:
                snapshot.services.extend(swarm_service_records(swarm_services, present))
                snapshot.read(Scope("service", SWARM_SERVICE_KIND))
        else:
            snapshot.read(Scope("service", SWARM_SERVICE_KIND))  # none here: the ones known before are gone
        return snapshot

    def _inspect(self, client: APIClient, containers: list[dict[str, Any]], snapshot: Snapshot) -> _Inspected:
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

        result = _Inspected()
        if not containers:
            return result
        workers = min(self.config.concurrency, len(containers))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"docker-{self.source_name}") as pool:
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
                    else describe_error(answer, self.config, call="")  # the line says: inspect
                )
                failures.setdefault(reason, []).append(container_name(container))
            else:
                result.details[container["Id"]] = answer
        for reason, names in failures.items():
            snapshot.fail(
                "containers", f"inspect failed for {count_of(len(names), 'container')} ({reason}): {examples(names)}"
            )
        return result


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
