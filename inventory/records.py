"""The plain typed values a connector hands to the core.

Every record is identified inside its source by ``(kind, external_id)``: the
source's own id (a Kubernetes uid, a Proxmox ``cluster/vmid``, a Docker
container id), never a name. Links between records of one snapshot are
``Ref`` values that name the target the same way.

Records are frozen; their ``labels`` and ``attributes`` mappings are owned by the
record once built and must not be mutated afterwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Ref:
    """Points at another record of the same snapshot by its source identity."""

    kind: str
    external_id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.external_id}"


def _empty() -> dict[str, Any]:
    return {}


@dataclass(frozen=True, slots=True)
class Host:
    """A machine: a Proxmox node, a VM or LXC seen as a machine, a Kubernetes node, a Docker engine."""

    kind: str
    external_id: str
    name: str
    status: str | None = None
    # Kept for correlating the same machine across sources (SMBIOS uuid =
    # Kubernetes systemUUID, then MAC addresses, then hostname).
    hostname: str | None = None
    machine_uuid: str | None = None
    mac_addresses: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    # The workload that *is* this machine (a Proxmox VM backs the host it appears as).
    backed_by: Ref | None = None
    labels: Mapping[str, str] = field(default_factory=_empty)
    attributes: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class Workload:
    """Something that runs: a pod, a deployment, a VM, an LXC, a container."""

    kind: str
    external_id: str
    name: str
    namespace: str | None = None
    status: str | None = None
    host: Ref | None = None
    parent: Ref | None = None
    labels: Mapping[str, str] = field(default_factory=_empty)
    attributes: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class Service:
    """Something users reach or care about, made of member workloads."""

    kind: str
    external_id: str
    name: str
    namespace: str | None = None
    status: str | None = None
    members: tuple[Ref, ...] = ()
    labels: Mapping[str, str] = field(default_factory=_empty)
    attributes: Mapping[str, Any] = field(default_factory=_empty)


Record = Host | Workload | Service


@dataclass(slots=True)
class Snapshot:
    """What one source answered in one collection.

    ``complete`` is true only when every resource of the source was read. An
    incomplete snapshot may still carry what was read; the engine upserts it
    but never concludes that anything missing from it is gone.
    """

    hosts: list[Host] = field(default_factory=list)
    workloads: list[Workload] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    complete: bool = True
    # The source system's own identity (a Kubernetes cluster's kube-system namespace uid, a
    # Proxmox cluster name, a Docker engine ID): a source renamed in config whose snapshot
    # carries the identity of an existing source of the same type takes that source over.
    identity: str | None = None
    # One line per resource that could not be read, e.g. "pods: HTTP 500 on page 3".
    errors: list[str] = field(default_factory=list)

    def fail(self, resource: str, reason: str) -> None:
        """Record that a resource could not be read; the snapshot stops being complete."""
        self.complete = False
        self.errors.append(f"{resource}: {reason}")

    @property
    def object_count(self) -> int:
        return len(self.hosts) + len(self.workloads) + len(self.services)


_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def to_json_bytes(value: Any) -> bytes:
    """Canonical JSON: sorted keys, compact; values JSON cannot hold become strings."""
    return orjson.dumps(value, default=str, option=_JSON_OPTIONS)


def record_hash(record: Record) -> str:
    """A stable digest of everything a record says: equal digests mean no write is needed.

    orjson serializes the frozen dataclass directly, which keeps an unchanged object's
    cost to one C call and one hash (no intermediate dict).
    """
    return hashlib.blake2b(to_json_bytes(record), digest_size=16).hexdigest()
