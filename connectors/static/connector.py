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
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inventory.connector import ConfigPath, Connector, SourceConfig
from inventory.errors import SourceError
from inventory.records import Host, Ref, Service, Snapshot, Workload

_ID = Field(min_length=1, max_length=500)


class _Declared(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = _ID
    name: str = Field(min_length=1)
    status: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class DeclaredHost(_Declared):
    kind: str = "machine"
    hostname: str | None = None
    machine_uuid: str | None = None
    mac_addresses: list[str] = Field(default_factory=list)
    addresses: list[str] = Field(default_factory=list)


class DeclaredWorkload(_Declared):
    kind: str = "app"
    namespace: str | None = None
    host: str | None = None  # id of a declared host
    parent: str | None = None  # id of a declared workload


class DeclaredService(_Declared):
    kind: str = "service"
    namespace: str | None = None
    members: list[str] = Field(default_factory=list)  # ids of declared workloads
    slo: float | None = Field(default=None, gt=0, le=100)
    url: str | None = None


class StaticInventory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hosts: list[DeclaredHost] = Field(default_factory=list)
    workloads: list[DeclaredWorkload] = Field(default_factory=list)
    services: list[DeclaredService] = Field(default_factory=list)

    @model_validator(mode="after")
    def _links_resolve(self) -> StaticInventory:
        _check_unique(self.hosts, "hosts")
        _check_unique(self.workloads, "workloads")
        _check_unique(self.services, "services")
        host_ids = {h.id for h in self.hosts}
        workload_ids = {w.id for w in self.workloads}
        for i, w in enumerate(self.workloads):
            if w.host is not None and w.host not in host_ids:
                raise ValueError(f"workloads[{i}].host: no declared host with id {w.host!r}")
            if w.parent is not None and w.parent not in workload_ids:
                raise ValueError(f"workloads[{i}].parent: no declared workload with id {w.parent!r}")
        for i, s in enumerate(self.services):
            for member in s.members:
                if member not in workload_ids:
                    raise ValueError(f"services[{i}].members: no declared workload with id {member!r}")
        return self


def _check_unique(items: list[_Declared], label: str) -> None:
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(items):
        key = (getattr(item, "kind"), item.id)
        if key in seen:
            raise ValueError(f"{label}[{i}].id: {item.id!r} is declared twice")
        seen.add(key)


class StaticConfig(SourceConfig, StaticInventory):
    type: str = "static"
    path: ConfigPath | None = None



class StaticConnector(Connector):
    type_name = "static"
    config_model = StaticConfig
    config: StaticConfig

    def collect(self) -> Snapshot:
        declared = [StaticInventory(hosts=self.config.hosts, workloads=self.config.workloads, services=self.config.services)]
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
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
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
