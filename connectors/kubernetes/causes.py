"""Who changed a Kubernetes object, from what the API server keeps: managedFields and the owner chain.

Every write records its field manager (``kubectl-client-side-apply``, ``kubectl`` for a server-side
apply, ``kube-controller-manager``, ``kubelet``...), the operation (Update or Apply), the time (to
the second) and the fields it owns (``fieldsV1``). The writer of a change is the entry, among those
owning a changed part of the object (its spec, status or metadata), written last. A pod, replicaset
or job made by a controller also names its owner chain (pod -> ReplicaSet x -> Deployment y), with
the manager that last wrote the top owner's template: the person or tool behind the rollout.

What is stated and what is inferred: a watch event names the object that changed and the parts
that changed, and an entry owning one of them written last is the writer (``inferred`` only when
entries of several managers share that second, or none owns a changed part). A full sync only
sees the object as it is now, not which change happened since the last one: its cause is the
last writer, marked inferred. A deletion is not recorded in managedFields: no cause (unknown).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from inventory.cause import Cause, CauseKind
from inventory.records import Host, Service, Workload

JSON = Mapping[str, Any]
Record = Host | Workload | Service

ALL_PARTS = frozenset({"metadata", "spec", "status"})
CREATED_PARTS = frozenset({"metadata", "spec"})

# Record attributes read from an object's spec (or, for "metadata", from its labels and annotations);
# every other attribute is read from its status. Nodes and services share attribute names with
# different origins, so they are told apart by the record's kind.
_SPEC_ATTRIBUTES = frozenset(
    {
        "node",
        "init_containers",
        "images",
        "replicas",
        "selector",
        "strategy",
        "paused",
        "service_name",
        "completions",
        "parallelism",
        "schedule",
        "suspend",
        "concurrency_policy",
        "time_zone",
        "type",
        "cluster_ips",
        "headless",
        "external_ips",
        "ports",
        "external_name",
        "class",
        "hosts",
        "rules",
        "default_backend",
        "tls_hosts",
    }
)
_NODE_SPEC_ATTRIBUTES = frozenset({"unschedulable", "taints", "provider_id", "pod_cidrs"})
_METADATA_ATTRIBUTES = frozenset({"annotations", "owner", "roles"})
# Derived from other objects (a service's member pods): no write to this object explains them.
_DERIVED = frozenset({"members"})


@dataclass(frozen=True, slots=True)
class Writer:
    """One managedFields entry: who wrote which parts of the object, and when (ISO 8601, to the second)."""

    manager: str
    operation: str | None
    time: str
    parts: frozenset[str]
    # Owns the pod template (spec.template, or a CronJob's spec.jobTemplate): what a rollout changes.
    template: bool

    @property
    def label(self) -> str:
        return f"{self.manager} {self.operation}" if self.operation else self.manager


def writers(meta: JSON) -> tuple[Writer, ...]:
    """The entries of an object's managedFields (none on an object that has none)."""
    found = []
    for entry in meta.get("managedFields") or ():
        manager = entry.get("manager")
        if not manager:
            continue
        fields = entry.get("fieldsV1") or {}
        parts = frozenset(key[2:] for key in fields if key.startswith("f:")) & ALL_PARTS
        spec = fields.get("f:spec") or {}
        found.append(
            Writer(
                manager=str(manager),
                operation=entry.get("operation"),
                time=str(entry.get("time") or ""),
                parts=parts,
                template="f:template" in spec or "f:jobTemplate" in spec,
            )
        )
    return tuple(found)


def last_writer(found: tuple[Writer, ...], parts: frozenset[str]) -> tuple[Writer | None, bool]:
    """The entry owning one of ``parts`` written last, and whether that is uncertain (several managers
    wrote such parts in the same second, or no entry owns them and the last of all is taken)."""
    candidates = [w for w in found if w.parts & parts]
    uncertain = False
    if not candidates:
        candidates, uncertain = list(found), True
    if not candidates:
        return None, True
    latest = max(w.time for w in candidates)
    top = [w for w in candidates if w.time == latest]
    if len({(w.manager, w.operation) for w in top}) > 1:
        uncertain = True
    return top[-1], uncertain


def changed_parts(old: Record | None, new: Record) -> frozenset[str]:
    """Which parts of the object (metadata, spec, status) a change between two records of it touched."""
    if old is None:
        return CREATED_PARTS
    parts: set[str] = set()
    if old.labels != new.labels or old.name != new.name:
        parts.add("metadata")
    if old.status != new.status:
        parts.add("status")
    if isinstance(old, Workload) and isinstance(new, Workload):
        if old.host != new.host:
            parts.add("spec")
        if old.parent != new.parent:
            parts.add("metadata")
    if (
        isinstance(old, Host)
        and isinstance(new, Host)
        and (old.addresses != new.addresses or old.hostname != new.hostname)
    ):
        parts.add("status")
    spec_names = _NODE_SPEC_ATTRIBUTES if isinstance(new, Host) else _SPEC_ATTRIBUTES
    for key in old.attributes.keys() | new.attributes.keys():
        before, after = old.attributes.get(key), new.attributes.get(key)
        if before == after or key in _DERIVED:
            continue
        if key in _METADATA_ATTRIBUTES:
            parts.add("metadata")
        elif key == "containers":
            # Images are the spec's, digests and restarts the status's.
            images = [c.get("image") for c in before or ()], [c.get("image") for c in after or ()]
            parts.add("spec" if images[0] != images[1] else "status")
        elif key in spec_names:
            parts.add("spec")
        else:
            parts.add("status")
    return frozenset(parts)


@dataclass(frozen=True, slots=True)
class Owner:
    """What the owner chain needs of a controller: its kind and name, its own controller, its template's writer."""

    kind: str
    name: str
    parent: str | None
    template_by: str | None


def controller_reference(meta: JSON) -> JSON | None:
    for owner in meta.get("ownerReferences") or ():
        if owner.get("controller"):
            return owner
    return None


def owner_of(kind: str, obj: JSON) -> Owner:
    """``kind`` as the API names it (ReplicaSet): list items do not carry their kind."""
    meta = obj["metadata"]
    reference = controller_reference(meta)
    template = [w for w in writers(meta) if w.template]
    latest = max(template, key=lambda w: w.time) if template else None
    return Owner(
        kind=kind,
        name=str(meta.get("name") or ""),
        parent=reference.get("uid") if reference else None,
        template_by=latest.label if latest else None,
    )


class Owners:
    """Controllers by uid, to follow a pod's owner chain up to the Deployment or CronJob that made it."""

    def __init__(self) -> None:
        self.by_uid: dict[str, Owner] = {}
        self._chains: dict[str, dict[str, Any]] = {}

    def note(self, uid: str, owner: Owner | None) -> None:
        if owner is None:
            self.by_uid.pop(uid, None)
        else:
            self.by_uid[uid] = owner
        self._chains.clear()  # cheap to rebuild; a controller changes rarely

    def detail(self, meta: JSON) -> dict[str, Any]:
        """``{"via": "Deployment/web", "owners": [{"kind": "ReplicaSet", "name": ...}, {"kind": "Deployment",
        "name": "web", "template_by": "kubectl Apply"}]}`` for an object with a controller; {} without one."""
        reference = controller_reference(meta)
        if reference is None:
            return {}
        uid = start = str(reference.get("uid") or "")
        cached = self._chains.get(start)
        if cached is not None:
            return cached
        chain: list[dict[str, Any]] = []
        seen: set[str] = set()
        step: Owner | None = self.by_uid.get(uid)
        current = {"kind": str(reference.get("kind") or ""), "name": str(reference.get("name") or "")}
        while True:
            if step is not None and step.template_by:
                current["template_by"] = step.template_by
            chain.append(current)
            seen.add(uid)
            if step is None or step.parent is None or step.parent in seen or len(chain) >= 4:
                break
            uid = step.parent
            step = self.by_uid.get(uid)
            if step is None:
                break
            current = {"kind": step.kind, "name": step.name}
        top = chain[-1]
        detail = {"via": f"{top['kind']}/{top['name']}", "owners": chain}
        self._chains[start] = detail
        return detail


def cause_of(
    found: tuple[Writer, ...], parts: frozenset[str], detail: Mapping[str, Any], *, stated: bool
) -> Cause | None:
    """The cause of a change to ``parts`` of an object; ``stated``: the change itself was seen (a watch event)."""
    if not parts:
        return None
    writer, uncertain = last_writer(found, parts)
    if writer is None:
        return None
    return Cause(
        CauseKind.KUBERNETES,
        actor=writer.manager,
        action=writer.operation,
        at=_time(writer.time),
        inferred=uncertain or not stated,
        detail=detail,
    )


@functools.lru_cache(maxsize=4096)  # to the second: thousands of objects share a few hundred times
def _time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None
