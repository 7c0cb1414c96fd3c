"""Hosts, workloads and services declared by hand: bare-metal boxes, a NAS, a switch, "plex".

Declared inline in the source entry, or in a separate YAML file (``path:``)
that is re-read at every sync, so that editing it needs no restart. Identity
is the declared ``id``; ``name`` can change freely.

    - type: static
      name: lab
      path: machines.yaml            # optional; merged with the inline lists
      hosts:
        - {id: nas1, name: nas, hostname: nas.lan, addresses: [192.168.1.10]}
      workloads:
        - {id: plex, name: plex, host: nas1, kind: app}
      services:
        - {id: plex, name: Plex, members: [plex], slo: 99.5}
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import yaml
from pydantic import ValidationError

from connectors.static.config import (
    TYPE_NAME,
    DeclaredHost,
    DeclaredService,
    DeclaredWorkload,
    StaticConfig,
    StaticInventory,
)
from inventory.connector import Connector, StatusVocabulary
from inventory.errors import SourceError
from inventory.records import Host, Ref, Service, Snapshot, Workload
from inventory.yaml_text import load_yaml


class StaticConnector(Connector):
    type_name = TYPE_NAME
    config_model = StaticConfig
    config: StaticConfig
    # Statuses are whatever the declaration says; these are the words people commonly write.
    statuses: ClassVar[StatusVocabulary] = StatusVocabulary(
        running={"running", "up", "active", "online", "available", "completed"},
        stopped={"stopped", "shutdown", "offline"},
        failed={"failed", "error"},
    )

    def collect(self) -> Snapshot:
        declared = [
            StaticInventory(hosts=self.config.hosts, workloads=self.config.workloads, services=self.config.services)
        ]
        if self.config.path is not None:
            declared.append(self._read_file(self.config.path))
        snapshot = Snapshot()
        for inventory in declared:
            host_kinds = {h.id: h.kind for h in inventory.hosts}
            workload_kinds = {w.id: w.kind for w in inventory.workloads}
            snapshot.hosts.extend(_host(h) for h in inventory.hosts)
            snapshot.workloads.extend(_workload(w, host_kinds, workload_kinds) for w in inventory.workloads)
            snapshot.services.extend(_service(s, workload_kinds) for s in inventory.services)
        return snapshot

    def _read_file(self, path: Path) -> StaticInventory:
        resource = f"file {path}"
        try:
            data = load_yaml(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise SourceError(self.source_name, resource, f"cannot read: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise SourceError(self.source_name, resource, f"malformed YAML: {exc}") from exc
        try:
            return StaticInventory.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise SourceError(self.source_name, resource, f"{loc}: {first['msg']}" if loc else first["msg"]) from exc


def _host(h: DeclaredHost) -> Host:
    return Host(
        kind=h.kind,
        external_id=h.id,
        name=h.name,
        status=h.status,
        hostname=h.hostname,
        machine_uuid=h.machine_uuid.lower() if h.machine_uuid else None,
        mac_addresses=tuple(m.lower() for m in h.mac_addresses),
        addresses=tuple(h.addresses),
        labels=h.labels,
        attributes=h.attributes,
    )


def _workload(w: DeclaredWorkload, host_kinds: dict[str, str], workload_kinds: dict[str, str]) -> Workload:
    return Workload(
        kind=w.kind,
        external_id=w.id,
        name=w.name,
        namespace=w.namespace,
        status=w.status,
        host=Ref(host_kinds[w.host], w.host) if w.host else None,
        parent=Ref(workload_kinds[w.parent], w.parent) if w.parent else None,
        labels=w.labels,
        attributes=w.attributes,
    )


def _service(s: DeclaredService, workload_kinds: dict[str, str]) -> Service:
    attributes = dict(s.attributes)
    if s.slo is not None:
        attributes["slo"] = s.slo
    if s.url is not None:
        attributes["url"] = s.url
    return Service(
        kind=s.kind,
        external_id=s.id,
        name=s.name,
        namespace=s.namespace,
        status=s.status,
        members=tuple(Ref(workload_kinds[m], m) for m in s.members),
        labels=s.labels,
        attributes=attributes,
    )
