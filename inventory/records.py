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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from inventory.cause import Cause


@dataclass(frozen=True, slots=True)
class Ref:
    """Points at another record of the same snapshot by its source identity."""

    kind: str
    external_id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.external_id}"


def _empty() -> dict[str, Any]:
    return {}


# Why ``unread`` is a frozenset: the names of canonical fields ("addresses", "host") or of
# label or attribute keys ("attributes.cpu_model") whose values a collection could not read.
# reconcile keeps the stored value of each and marks the object's details stale.
NO_FIELDS: frozenset[str] = frozenset()


# An object of a source by its identity: (object type, kind, external id).
ObjectKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Scope:
    """A part of a source one list call answers: an object type, optionally one kind, optionally one namespace.

    None means "every": Scope("workload", "pod") is every pod in every namespace,
    Scope("workload", "pod", "default") the pods of namespace default, Scope("host") every host.
    """

    object_type: str  # "host" | "workload" | "service"
    kind: str | None = None
    namespace: str | None = None

    def covers(self, object_type: str, kind: str, namespace: str | None) -> bool:
        return (
            self.object_type == object_type
            and (self.kind is None or self.kind == kind)
            and (self.namespace is None or self.namespace == namespace)
        )


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
    unread: frozenset[str] = NO_FIELDS


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
    unread: frozenset[str] = NO_FIELDS


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
    unread: frozenset[str] = NO_FIELDS


Record = Host | Workload | Service


@dataclass(slots=True)
class Snapshot:
    """What one source answered in one collection.

    ``complete`` is true only when every resource of the source was read. An
    incomplete snapshot may still carry what was read; the engine upserts it
    but never concludes that anything missing from it is gone.

    A connector that knows its scopes declares each one it read completely (``read``):
    then removal is decided per scope, whatever else failed, and ``complete`` no longer
    matters for it. ``warn`` records a fact (a node found down) that does not make the run
    partial; ``fail`` records a scope that should have been read and was not; ``forbid``
    records scopes the credentials may not read: a fact while something else was read, but a
    snapshot that read nothing else is ``nothing_readable`` (the run is ``forbidden``, not fresh).
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
    # The scopes read completely; None: the source declares none and ``complete`` covers everything.
    scopes: list[Scope] | None = None
    warnings: list[str] = field(default_factory=list)
    # Objects the source could not tell exist or not, as (object type, kind, external id): never
    # created or revived, never removed; a live one is updated from its record, if the snapshot has one.
    kept: set[tuple[str, str, str]] = field(default_factory=set)
    # Scopes the source should read that its credentials may not (HTTP 403, a privilege missing),
    # and one "resource: reason" line per ``forbid`` call saying so (also a warning, see ``facts``).
    forbidden: list[Scope] = field(default_factory=list)
    denials: list[str] = field(default_factory=list)
    # What to grant so that the credentials can read the forbidden scopes (said when nothing was readable).
    grant: str | None = None
    # Objects the source said are gone (a watch DELETED event, a container destroyed), as (object type,
    # kind, external id): removed whatever the scopes say, since the source answered for each one itself.
    deleted: set[ObjectKey] = field(default_factory=set)
    # Why objects changed, where the source tells (inventory/cause.py), keyed like ``deleted``; stored with
    # the change row an object's create, update, removal or revival writes (an unchanged object writes none).
    causes: dict[ObjectKey, Cause] = field(default_factory=dict)
    # A delta from a change stream (``Connector.watch``): it names only what changed, so reconcile looks
    # up only the objects it names and their link targets, and removes nothing but ``deleted`` unless the
    # delta also ``read`` a scope completely (a relist after a watch expired), which is then reconciled whole.
    delta: bool = False

    @classmethod
    def changes(cls, identity: str | None = None) -> Snapshot:
        """An empty delta: what a change stream yields, filled with the records it saw change and ``delete``."""
        return cls(complete=False, identity=identity, scopes=[], delta=True)

    def delete(self, object_type: str, kind: str, external_id: str, cause: Cause | None = None) -> None:
        """Declare one object gone, as the source said (not merely missing from a list)."""
        key = (object_type, kind, external_id)
        self.deleted.add(key)
        if cause is not None:
            self.causes[key] = cause

    def attribute(self, object_type: str, record: Host | Workload | Service, cause: Cause) -> None:
        """Say why this record's object changed (kept only if it did change)."""
        self.causes[(object_type, record.kind, record.external_id)] = cause

    def keep(self, object_type: str, kind: str, external_id: str) -> None:
        """Declare an object whose existence is unknown this time (e.g. whether a guest of an offline
        node is a template, which has no host): a complete scope does not remove it, and its record
        (if any) updates it only where it is stored and live."""
        self.kept.add((object_type, kind, external_id))

    def fail(self, resource: str, reason: str) -> None:
        """Record that a resource could not be read; the snapshot stops being complete."""
        self.complete = False
        self.errors.append(f"{resource}: {reason}")

    def read(self, scope: Scope) -> None:
        """Declare a scope read completely: what it held before and no longer holds is gone."""
        if self.scopes is None:
            self.scopes = []
        self.scopes.append(scope)

    def warn(self, resource: str, reason: str) -> None:
        """Record a fact worth saying (skipped on purpose, found down); the run stays a success."""
        self.warnings.append(f"{resource}: {reason}")

    def forbid(self, scopes: Iterable[Scope], resource: str, reason: str, grant: str | None = None) -> None:
        """Declare scopes the credentials may not read, in one line, and what to grant to read them.

        Nothing in a forbidden scope is removed. Whether this is a fact or the run's failure is
        decided by the core (``nothing_readable``): with some other scope read it is a warning
        (a namespace-scoped account); with none, the run is ``forbidden`` and ``grant`` is its advice.
        """
        if self.scopes is None:  # from now on removal is decided per scope: a forbidden one removes nothing
            self.scopes = []
        self.forbidden.extend(scopes)
        self.denials.append(f"{resource}: {reason}")
        self.warnings.append(f"{resource}: {reason}")
        if grant:
            self.grant = grant

    @property
    def nothing_readable(self) -> bool:
        """Every scope the source should read was forbidden: the credentials may read none of what it holds.

        Such a run is not a success whatever it answered ([] lists, 403s): its rows are kept and the
        source goes stale (``SyncStatus.FORBIDDEN``), rather than passing for an empty system.
        """
        return bool(self.forbidden) and not self.scopes and not self.object_count

    @property
    def facts(self) -> list[str]:
        """The warnings a run keeps: every one, but the denials when they are the run's error (nothing readable)."""
        if not self.nothing_readable:
            return list(self.warnings)
        return [w for w in self.warnings if w not in self.denials]

    def unreadable_reason(self) -> str:
        """What a run that read nothing says (``sync``'s error, ``check``'s detail): what was refused, what to grant."""
        # The advice names what was refused; without one, the refusals themselves.
        return f"nothing readable: {self.grant or '; '.join(self.denials)}"

    def removes(self, object_type: str, kind: str, namespace: str | None) -> bool:
        """Whether an object of this source missing from the snapshot is gone (not merely unread)."""
        if self.delta and not self.scopes:
            return False
        if self.scopes is None:
            return self.complete
        return any(scope.covers(object_type, kind, namespace) for scope in self.scopes)

    @property
    def object_count(self) -> int:
        return len(self.hosts) + len(self.workloads) + len(self.services)


_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def to_json_bytes(value: Any) -> bytes:
    """Canonical JSON: sorted keys, compact; values JSON cannot hold become strings."""
    return orjson.dumps(value, default=str, option=_JSON_OPTIONS)


# ``unread`` (last field of every record, empty once reconcile has merged stored values) is no
# content: cutting its encoding keeps every digest what it was before records carried it, so an
# upgrade rewrites nothing.
_NO_UNREAD = b',"unread":"frozenset()"}'


def record_hash(record: Record) -> str:
    """A stable digest of everything a record says but ``unread``: equal digests mean no write is needed.

    orjson serializes the frozen dataclass directly, which keeps an unchanged object's
    cost to one C call and one hash (no intermediate dict).
    """
    if record.unread:
        record = replace(record, unread=NO_FIELDS)
    data = to_json_bytes(record)
    if data.endswith(_NO_UNREAD):
        data = data[: -len(_NO_UNREAD)] + b"}"
    return hashlib.blake2b(data, digest_size=16).hexdigest()
