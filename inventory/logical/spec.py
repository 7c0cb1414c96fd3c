"""The ``services:`` section of the config.

services:
  - name: plex
    description: Plex on the NAS and its ingress in k3s
    require: any                 # any (default): up while one member runs; all: while every member runs
    select:                      # a member matches any selector; within one, every key given must match
      - {source: nas, kind: container, name: "plex*"}
      - {type: service, source: k3s, kind: ingress, namespace: media, name: plex}
      - {labels: {app.kubernetes.io/name: plex}}
      - {id: pve/qemu/homelab/120}   # SOURCE/KIND/EXTERNAL_ID, with type: host for a host
    slo: {target: 99.9, window: 30d}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from inventory.connector import Duration


class MemberSelector(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["workload", "service", "host"] = "workload"
    source: str | None = None
    kind: str | None = None
    name: str | None = Field(default=None, description="A shell-style glob: * and ?")
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    id: str | None = Field(default=None, description="SOURCE/KIND/EXTERNAL_ID")

    @model_validator(mode="after")
    def _narrow(self) -> MemberSelector:
        if not (self.source or self.kind or self.name or self.namespace or self.labels or self.id):
            raise ValueError(
                "a selector must name at least one of source, kind, name, namespace, labels, id"
                " (it would select everything)"
            )
        if self.id is not None and len(self.id.split("/", 2)) != 3:
            raise ValueError(f"id must be SOURCE/KIND/EXTERNAL_ID, got {self.id!r}")
        if self.namespace is not None and self.type == "host":
            raise ValueError("hosts have no namespace")
        return self


class Slo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: float = Field(gt=0, le=100, description="Percent of the window the service must be up, e.g. 99.9")
    window: Duration = Field(default=30 * 86400.0, gt=0)


class LogicalService(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    require: Literal["any", "all"] = "any"
    select: list[MemberSelector] = Field(min_length=1)
    slo: Slo | None = None


def _unique_names(services: list[LogicalService]) -> list[LogicalService]:
    seen: set[str] = set()
    for service in services:
        if service.name in seen:
            raise ValueError(f"two services are named {service.name!r}")
        seen.add(service.name)
    return services


LogicalServices = Annotated[list[LogicalService], AfterValidator(_unique_names)]
