"""Reconcile on the in-memory store: the sync engine's logic with no database and no API, in milliseconds.

tests/test_reconcile.py runs the same cases end to end on SQLite and PostgreSQL;
tests/test_store_contract.py holds every store to the behaviour these rely on.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from itertools import count

import pytest

from inventory.reconcile import ReconcileResult, reconcile
from inventory.records import Host, Ref, Service, Snapshot, Workload
from inventory.storage.memory import MemoryStore
from inventory.timeutil import utcnow

T0 = utcnow()


class Engine:
    """A memory store and the runs reconciled into it, one minute apart."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.runs = count(1)

    def sync(self, snapshot: Snapshot, *, source_id: int = 1, allow_empty: bool = False) -> ReconcileResult:
        run_id = next(self.runs)
        return reconcile(
            snapshot,
            self.store,
            source_id=source_id,
            run_id=run_id,
            allow_empty=allow_empty,
            now=T0 + timedelta(minutes=run_id),
        )

    def live(self, object_type: str) -> dict[str, int]:
        return {o.external_id: i for i, o in self.store.objects[object_type].items() if o.removed_at is None}

    def actions(self) -> list[tuple[str, str, str]]:
        return [(c.change.object_type, c.change.action, c.change.name) for c in self.store.changes]


@pytest.fixture
def engine() -> Engine:
    return Engine()


def lab(*, pods: int = 3, node_name: str = "node-a", complete: bool = True) -> Snapshot:
    workloads = [Workload("deployment", "dep-1", "web", namespace="default", status="available")]
    workloads += [
        Workload(
            "pod",
            f"pod-{i}",
            f"web-{i}",
            status="Running",
            host=Ref("node", "n1"),
            parent=Ref("deployment", "dep-1"),
            labels={"app": "web"},
        )
        for i in range(pods)
    ]
    return Snapshot(
        hosts=[Host("node", "n1", node_name, status="Ready", mac_addresses=("bb:00", "aa:00"), attributes={"cpu": 4})],
        workloads=workloads,
        services=[Service("service", "svc-1", "web", members=tuple(Ref("pod", f"pod-{i}") for i in range(pods)))],
        complete=complete,
    )


def test_first_sync_creates_everything_with_links(engine: Engine) -> None:
    result = engine.sync(lab())
    assert (result.created, result.unchanged, result.statements) == (6, 0, 0)
    host_id = engine.live("host")["n1"]
    workloads = engine.store.objects["workload"]
    pod = workloads[engine.live("workload")["pod-0"]]
    assert pod.links == {"host": host_id, "parent": engine.live("workload")["dep-1"]}
    assert engine.store.members[engine.live("service")["svc-1"]] == [
        engine.live("workload")[f"pod-{i}"] for i in range(3)
    ]
    assert engine.store.objects["host"][host_id].columns["mac_addresses"] == ["aa:00", "bb:00"]
    assert [a for _, a, _ in engine.actions()] == ["created"] * 6


def test_unchanged_resync_writes_nothing(engine: Engine) -> None:
    engine.sync(lab())
    before = {i: o.changed_at for i, o in engine.store.objects["workload"].items()}
    reordered = lab()
    reordered.hosts[0] = replace(reordered.hosts[0], mac_addresses=("aa:00", "bb:00"))
    reordered.services[0] = replace(reordered.services[0], members=tuple(reversed(reordered.services[0].members)))
    result = engine.sync(reordered)
    assert (result.changed, result.unchanged) == (0, 6)
    assert {i: o.changed_at for i, o in engine.store.objects["workload"].items()} == before
    assert len(engine.store.changes) == 6


def test_update_records_changed_fields_old_to_new(engine: Engine) -> None:
    engine.sync(lab())
    snapshot = lab(node_name="node-renamed")
    snapshot.hosts[0] = replace(snapshot.hosts[0], status="NotReady", attributes={"cpu": 8})
    result = engine.sync(snapshot)
    assert (result.updated, result.unchanged) == (1, 5)
    change = engine.store.changes[-1].change
    assert (change.action, change.name) == ("updated", "node-renamed")
    assert change.diff == {
        "attributes.cpu": [4, 8],
        "name": ["node-a", "node-renamed"],
        "status": ["Ready", "NotReady"],
    }


def test_vanished_objects_are_removed_and_come_back_revived(engine: Engine) -> None:
    engine.sync(lab(pods=3))
    result = engine.sync(lab(pods=1))
    assert result.removed == 2 and set(engine.live("workload")) == {"dep-1", "pod-0"}
    assert sorted(a for a in engine.actions() if a[1] == "removed") == [
        ("workload", "removed", "web-1"),
        ("workload", "removed", "web-2"),
    ]
    result = engine.sync(lab(pods=3))
    assert (result.revived, result.removed, result.updated) == (2, 0, 1)  # the service's members grew back
    assert len(engine.store.objects["workload"]) == 4 and len(engine.live("workload")) == 4


def test_incomplete_snapshot_upserts_but_removes_nothing(engine: Engine) -> None:
    engine.sync(lab(pods=3))
    result = engine.sync(lab(pods=1, complete=False))
    assert (result.removed, result.updated) == (0, 1)
    assert len(engine.live("workload")) == 4


def test_empty_complete_answer_is_withheld_unless_allowed(engine: Engine) -> None:
    engine.sync(lab())
    result = engine.sync(Snapshot())
    assert result.removed == 0 and len(result.withheld) == 3
    assert "no workloads at all, but 4 were known" in result.withheld[1]
    assert engine.sync(Snapshot(), allow_empty=True).removed == 6


def test_link_to_an_object_that_appears_later_is_filled_in(engine: Engine) -> None:
    orphan = Snapshot(workloads=[Workload("pod", "p1", "lonely", host=Ref("node", "late"))], complete=False)
    result = engine.sync(orphan)
    assert result.unresolved_links == 1
    (pod,) = engine.store.objects["workload"].values()
    assert pod.links["host"] is None
    arrived = Snapshot(hosts=[Host("node", "late", "late-node")], workloads=orphan.workloads)
    result = engine.sync(arrived)
    assert (result.created, result.updated, result.unresolved_links) == (1, 1, 0)
    assert pod.links["host"] == engine.live("host")["late"]
    assert engine.store.changes[-1].change.diff == {"host": [None, "node:late"]}


def test_duplicates_are_kept_once_and_sources_are_scoped(engine: Engine) -> None:
    result = engine.sync(Snapshot(workloads=[Workload("pod", "p1", "a"), Workload("pod", "p1", "b")]))
    assert result.duplicates == 1
    engine.sync(lab(), source_id=2)
    result = engine.sync(Snapshot(hosts=[Host("node", "n1", "node-a")]), source_id=1, allow_empty=True)
    assert result.removed == 1  # source 1's pod only; source 2 keeps its six objects
    assert sum(1 for o in engine.store.objects["workload"].values() if o.source_id == 2 and o.removed_at is None) == 4


def test_membership_changes_are_recorded(engine: Engine) -> None:
    engine.sync(lab(pods=2))
    snapshot = lab(pods=2)
    snapshot.services[0] = replace(snapshot.services[0], members=(Ref("pod", "pod-1"), Ref("pod", "gone")))
    result = engine.sync(snapshot)
    assert result.unresolved_links == 1
    assert engine.store.changes[-1].change.diff == {"members": [["pod:pod-0", "pod:pod-1"], ["pod:pod-1"]]}
    assert engine.store.members[engine.live("service")["svc-1"]] == [engine.live("workload")["pod-1"]]
