"""The configuration of a static source: hosts, workloads and services declared inline or in a file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inventory.connector import ConfigPath, SourceConfig

TYPE_NAME = "static"

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


def _check_unique(items: Sequence[DeclaredHost | DeclaredWorkload | DeclaredService], label: str) -> None:
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(items):
        key = (item.kind, item.id)
        if key in seen:
            raise ValueError(f"{label}[{i}].id: {item.id!r} is declared twice")
        seen.add(key)


class StaticConfig(SourceConfig, StaticInventory):
    type: str = TYPE_NAME
    path: ConfigPath | None = None
