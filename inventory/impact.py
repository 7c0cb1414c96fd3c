"""What breaks if a host or a workload goes: everything that runs on it, down to the services left without members.

The walk goes downward only:

- a host takes the workloads placed on it;
- a workload takes its children (a Deployment its pods) and the host it backs (a Proxmox
  guest is also the VM host that other sources see);
- a host that *is* a machine (a hypervisor guest, a Proxmox node, a hand-declared machine)
  takes the hosts other sources see on that same machine: the Kubernetes node it runs, the
  Docker engine on it. A Kubernetes node or a Docker engine is one runtime on a machine; its
  loss takes its own workloads, not the machine nor the other runtimes on it.

Services are affected when a member is; one is left without ready members when none of
its live members outside the affected set is running. Each level of the walk is one query,
except the same-machine lookup (one per machine-level host).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inventory.errors import Ambiguous, NotFound, UsageError
from inventory.object_ids import bare_id, objects_with_id, refuse_shared_id
from inventory.policy.targets import Target, resolve_target, split_target
from inventory.queries import same_machine
from inventory.report import classify_status
from inventory.storage.models import HostRow, ServiceMember, ServiceRow, Source, WorkloadRow

# Sources that see a machine as one runtime on it, rather than as the machine itself.
RUNTIME_SOURCE_TYPES = frozenset({"kubernetes", "docker"})
# A bare name is tried as a guest first: a guest is the top of its machine, so its impact holds everything below.
GUEST_KINDS = ("qemu", "lxc")


@dataclass(frozen=True)
class Affected:
    """An object that goes with the target, as the policy engine sees a target (so protection rules read it alike)."""

    target: Target
    status: str | None
    # Why it is affected, e.g. "runs on host k3s/node-0000".
    via: str = ""

    @property
    def object_type(self) -> str:
        return self.target.object_type

    @property
    def id(self) -> int:
        return self.target.id

    @property
    def source(self) -> str:
        return self.target.source

    @property
    def kind(self) -> str:
        return self.target.kind

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def namespace(self) -> str | None:
        return self.target.namespace

    @property
    def label(self) -> str:
        return "/".join(p for p in (self.source, self.kind, self.namespace, self.name) if p)

    def brief(self) -> dict[str, Any]:
        brief = {
            "type": self.object_type,
            "id": self.id,
            "source": self.source,
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
        }
        if self.namespace:
            brief["namespace"] = self.namespace
        if self.via:
            brief["via"] = self.via
        return brief


@dataclass(frozen=True)
class ServiceImpact:
    service: Affected
    members: int  # live members
    lost: int  # live members in the affected set
    left_running: int  # live members outside it that are running

    @property
    def left_without_ready_members(self) -> bool:
        return self.left_running == 0

    def brief(self) -> dict[str, Any]:
        return {
            **self.service.brief(),
            "members": self.members,
            "lost": self.lost,
            "left_running": self.left_running,
            "down": self.left_without_ready_members,
        }


@dataclass(frozen=True)
class Impact:
    target: Affected
    hosts: tuple[Affected, ...] = ()
    workloads: tuple[Affected, ...] = ()
    services: tuple[ServiceImpact, ...] = ()

    @property
    def services_down(self) -> tuple[ServiceImpact, ...]:
        return tuple(s for s in self.services if s.left_without_ready_members)

    @property
    def objects(self) -> tuple[Affected, ...]:
        """Everything affected besides the target itself."""
        return (*self.hosts, *self.workloads, *(s.service for s in self.services))

    @property
    def empty(self) -> bool:
        return not (self.hosts or self.workloads or self.services)

    def summary(self) -> str:
        down = self.services_down
        counts = f"{len(self.hosts)} host(s), {len(self.workloads)} workload(s), {len(self.services)} service(s)"
        text = f"{self.target.label} takes {counts}"
        if down:
            text += f"; left without ready members: {', '.join(s.service.label for s in down[:10])}" + (
                " ..." if len(down) > 10 else ""
            )
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.brief(),
            "summary": self.summary(),
            "hosts": [h.brief() for h in self.hosts],
            "workloads": [w.brief() for w in self.workloads],
            "services": [s.brief() for s in self.services],
        }


def _machine_peers(session: Session, host: HostRow) -> list[dict[str, Any]]:
    """The one place the same-machine links (stored by the last sync, inventory.machine_links) are read."""
    return same_machine(session, host)


def resolve_impact_target(session: Session, text: str) -> tuple[str, int]:
    """``host:…`` / ``workload:…`` as the policy's --target; a bare name: a guest, else a host, else any workload."""
    object_type, _ = split_target(text)
    if object_type in ("host", "workload"):
        target = resolve_target(session, text, default_type=object_type)
        return target.object_type, target.id
    if object_type is not None:
        raise UsageError(f"impact is computed for hosts and workloads, not for a {object_type}")
    number = bare_id(text)
    if number is not None:
        found = objects_with_id(session, number, ("host", "workload"))
        refuse_shared_id(text, found)
        if found:
            return found[0][0], found[0][1].id
    tries: list[tuple[str, tuple[str, ...]]] = [("workload", GUEST_KINDS), ("host", ()), ("workload", ())]
    for default_type, kinds in tries:
        try:
            target = resolve_target(session, text, default_type=default_type, kinds=kinds)
        except NotFound:
            continue
        except Ambiguous:
            if default_type == "workload" and kinds:
                continue
            raise
        return target.object_type, target.id
    raise NotFound(f"no live host or workload matches {text!r}")


class _Walk:
    """One breadth-first walk down from a target; every object is taken once, with the first reason found."""

    def __init__(self, session: Session, sources: Mapping[int, tuple[str, str]]) -> None:
        self.session = session
        self.sources = sources
        self.taken: dict[str, dict[int, Affected]] = {"host": {}, "workload": {}}
        self.frontier: dict[str, list[Any]] = {"host": [], "workload": []}

    def take(self, object_type: str, row: Any, via: str) -> None:
        if row.id not in self.taken[object_type]:
            self.taken[object_type][row.id] = _affected(object_type, row, self.sources, via=via)
            self.frontier[object_type].append(row)

    def name(self, row: Any) -> str:
        return f"{self.sources[row.source_id][0]}/{row.name}"

    def step(self) -> bool:
        hosts, workloads = self.frontier["host"], self.frontier["workload"]
        self.frontier = {"host": [], "workload": []}
        on_hosts = {h.id: self.name(h) for h in hosts}
        for row in _live(self.session, WorkloadRow, WorkloadRow.host_id.in_(list(on_hosts))):
            self.take("workload", row, f"runs on host {on_hosts[row.host_id]}")
        for host in hosts:
            if self.sources[host.source_id][1] in RUNTIME_SOURCE_TYPES:
                continue
            for peer in _machine_peers(self.session, host):
                row = self.session.get(HostRow, peer["id"]) if "removed_at" not in peer else None
                if row is not None:
                    self.take("host", row, f"same machine as {on_hosts[host.id]} ({peer['matched_by']})")
        of_workloads = {w.id: self.name(w) for w in workloads}
        for row in _live(self.session, WorkloadRow, WorkloadRow.parent_id.in_(list(of_workloads))):
            self.take("workload", row, f"child of {of_workloads[row.parent_id]}")
        for row in _live(self.session, HostRow, HostRow.backing_workload_id.in_(list(of_workloads))):
            self.take("host", row, f"backed by guest {of_workloads[row.backing_workload_id]}")
        return bool(self.frontier["host"] or self.frontier["workload"])


def impact_of(session: Session, object_type: str, object_id: int) -> Impact:
    """Everything that goes with the live host or workload ``object_id`` (see the module docstring)."""
    sources = {sid: (name, stype) for sid, name, stype in session.execute(select(Source.id, Source.name, Source.type))}
    start: HostRow | WorkloadRow | None = (
        session.get(HostRow, object_id) if object_type == "host" else session.get(WorkloadRow, object_id)
    )
    if start is None:
        raise NotFound(f"no {object_type} {object_id}")
    walk = _Walk(session, sources)
    walk.take(object_type, start, "")
    target = walk.taken[object_type].pop(start.id)
    while walk.step():
        pass
    walk.taken[object_type].pop(start.id, None)
    gone = set(walk.taken["workload"]) | ({start.id} if object_type == "workload" else set())
    services = _services(session, gone, sources)
    return Impact(
        target,
        tuple(sorted(walk.taken["host"].values(), key=_order)),
        tuple(sorted(walk.taken["workload"].values(), key=_order)),
        tuple(sorted(services, key=lambda s: (not s.left_without_ready_members, *_order(s.service)))),
    )


def _order(item: Affected) -> tuple[str, str, str, str, int]:
    return (item.source, item.kind, item.namespace or "", item.name, item.id)


def impact(session: Session, text: str) -> Impact:
    """``inventory impact TARGET``: resolve the target, then walk down from it."""
    return impact_of(session, *resolve_impact_target(session, text))


def _live(session: Session, model: Any, condition: Any) -> Iterable[Any]:
    return session.execute(select(model).where(condition, model.removed_at.is_(None)).order_by(model.id)).scalars()


def _affected(object_type: str, row: Any, sources: Mapping[int, tuple[str, str]], *, via: str = "") -> Affected:
    source, source_type = sources[row.source_id]
    target = Target(
        object_type, row.id, source, source_type, row.kind, row.external_id, row.name,
        getattr(row, "namespace", None), dict(row.labels or {}), dict(row.attributes or {}),
    )  # fmt: skip
    return Affected(target, row.status, via)


def _services(
    session: Session, affected_workloads: set[int], sources: Mapping[int, tuple[str, str]]
) -> list[ServiceImpact]:
    if not affected_workloads:
        return []
    service_ids = select(ServiceMember.service_id).where(ServiceMember.workload_id.in_(list(affected_workloads)))
    rows = list(_live(session, ServiceRow, ServiceRow.id.in_(service_ids)))
    if not rows:
        return []
    members: dict[int, list[tuple[int, str | None]]] = {}
    stmt = (
        select(ServiceMember.service_id, WorkloadRow.id, WorkloadRow.status)
        .join(WorkloadRow, WorkloadRow.id == ServiceMember.workload_id)
        .where(ServiceMember.service_id.in_([r.id for r in rows]), WorkloadRow.removed_at.is_(None))
    )
    for service_id, workload_id, status in session.execute(stmt):
        members.setdefault(service_id, []).append((workload_id, status))
    impacts = []
    for row in rows:
        live = members.get(row.id, [])
        lost = sum(1 for wid, _ in live if wid in affected_workloads)
        if not lost:
            continue
        running = sum(
            1 for wid, status in live if wid not in affected_workloads and classify_status(status) == "running"
        )
        via = f"{lost} of its {len(live)} member(s) affected"
        impacts.append(ServiceImpact(_affected("service", row, sources, via=via), len(live), lost, running))
    return impacts
