"""One machine as a graph: the machine -> its host in each source -> their workloads -> the services they serve.

The data behind the host page's picture (and anything else that wants the same walk): live rows
only, the machine's hosts from the stored machine links, each column capped so that a node with
hundreds of pods stays readable (``more`` says how many were left out). Edges are the stored links:
a workload's host, a service's members.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inventory.storage.models import HostRow, MachineLink, ServiceMember, ServiceRow, Source, WorkloadRow

# Most nodes a column shows; the rest are counted.
COLUMN_LIMIT = 24


@dataclass(frozen=True)
class Node:
    object_type: str  # machine | host | workload | service
    id: int
    label: str
    detail: str = ""
    status: str | None = None


@dataclass
class MachineGraph:
    columns: dict[str, list[Node]] = field(default_factory=dict)
    edges: list[tuple[tuple[str, int], tuple[str, int]]] = field(default_factory=list)
    # Per column, how many were left out.
    more: dict[str, int] = field(default_factory=dict)


def machine_graph(session: Session, host_id: int, limit: int = COLUMN_LIMIT) -> MachineGraph:
    """The graph of the machine the live host ``host_id`` is one view of."""
    sources = dict(session.execute(select(Source.id, Source.name)).all())
    linked = select(MachineLink.other_id).where(MachineLink.host_id == host_id)
    hosts = list(
        session.execute(
            select(HostRow)
            .where((HostRow.id == host_id) | HostRow.id.in_(linked), HostRow.removed_at.is_(None))
            .order_by(HostRow.id)
        ).scalars()
    )
    graph = MachineGraph()
    names = sorted({h.hostname or h.name for h in hosts})
    graph.columns["machine"] = [Node("machine", host_id, " / ".join(names[:2]) or "machine")]
    graph.columns["host"] = [
        Node("host", h.id, h.name, f"{sources.get(h.source_id)} {h.kind}", h.status) for h in hosts
    ]
    graph.edges += [(("machine", host_id), ("host", h.id)) for h in hosts]
    workloads = list(
        session.execute(
            select(WorkloadRow)
            .where(WorkloadRow.host_id.in_([h.id for h in hosts]), WorkloadRow.removed_at.is_(None))
            .order_by(WorkloadRow.host_id, WorkloadRow.namespace, WorkloadRow.name)
        ).scalars()
    )
    shown_workloads = workloads[:limit]
    graph.more["workload"] = len(workloads) - len(shown_workloads)
    graph.columns["workload"] = [
        Node("workload", w.id, w.name, f"{sources.get(w.source_id)} {w.kind}", w.status) for w in shown_workloads
    ]
    graph.edges += [(("host", w.host_id), ("workload", w.id)) for w in shown_workloads if w.host_id is not None]
    member_rows = session.execute(
        select(ServiceMember.service_id, ServiceMember.workload_id).where(
            ServiceMember.workload_id.in_([w.id for w in shown_workloads])
        )
    ).all()
    service_ids = sorted({service_id for service_id, _ in member_rows})
    services: list[Any] = list(
        session.execute(
            select(ServiceRow).where(ServiceRow.id.in_(service_ids), ServiceRow.removed_at.is_(None))
        ).scalars()
    )
    shown_services = sorted(services, key=lambda s: (s.namespace or "", s.name))[:limit]
    graph.more["service"] = len(services) - len(shown_services)
    kept = {s.id for s in shown_services}
    graph.columns["service"] = [
        Node("service", s.id, s.name, f"{sources.get(s.source_id)} {s.kind}") for s in shown_services
    ]
    graph.edges += [(("workload", w), ("service", s)) for s, w in member_rows if s in kept]
    return graph


__all__ = ["COLUMN_LIMIT", "MachineGraph", "Node", "machine_graph"]
