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

Between full syncs ``watch`` follows ``/events`` (containers only) and re-reads each container an
event names with the same code (connectors/docker/watch.py), each change with its event as cause.

Identity: the engine's ``ID`` from ``/info`` (not the URL, which can change)
and each container's id. Engines on VMs cloned from one template can report the
same ``ID``; it identifies the engine within its source only, so the snapshot
never claims it as the source's identity (that would merge two machines).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar

from connectors.docker.api import open_client
from connectors.docker.config import TYPE_NAME, DockerConfig, default_local_source
from connectors.docker.reading import needs_inspect, read_engine
from inventory.connector import Connector, KindVocabulary, SourceConfig, StarterSource, StatusVocabulary
from inventory.records import Snapshot

if TYPE_CHECKING:  # pragma: no cover
    from docker import APIClient

    from inventory.policy.tools import ToolSpec

__all__ = ["DockerConnector", "needs_inspect"]


class DockerConnector(Connector):
    type_name = TYPE_NAME
    config_model = DockerConfig
    sdk_modules = ("docker", "docker.errors", "requests")
    # An engine is one runtime on a machine: losing it takes its containers, not the machine.
    runtime = True
    # Follows /events (type=container) as it happens: connectors/docker/watch.py.
    streams = True
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
        return read_engine(client, self.config).snapshot

    def watch(self, stop: threading.Event) -> Iterator[Snapshot]:
        """The engine's container events as deltas (connectors/docker/watch.py says how)."""
        from connectors.docker.watch import follow

        return follow(self.config, stop)
