"""Deltas and causes through reconcile, on SQLite and PostgreSQL: what a change stream hands the core.

A delta names only what changed: it updates those objects, removes only what the source said
is deleted, looks up only the objects it names, and stores with each change row the cause the
source told (shown as the BY column of `inventory changes`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from inventory.cause import Cause, CauseKind, describe
from inventory.reconcile import reconcile
from inventory.records import Host, Ref, Snapshot, Workload
from inventory.storage.database import Database
from inventory.storage.memory import MemoryStore
from inventory.storage.models import Change, WorkloadRow
from inventory.storage.store import SqlStore

STOPPED_BY_TASK = Cause(
    CauseKind.PROXMOX_TASK,
    actor="root@pam",
    action="qmstop",
    ref="UPID:pve1:0001:qmstop:101:root@pam:",
    at=datetime(2026, 12, 6, 10, 0, tzinfo=UTC),
)


def pods(count: int, status: str = "Running") -> list[Workload]:
    return [
        Workload("pod", f"uid-{i}", f"web-{i}", namespace="default", status=status, host=Ref("node", "n1"))
        for i in range(count)
    ]


def full(count: int = 50) -> Snapshot:
    return Snapshot(hosts=[Host("node", "n1", "node-1", status="Ready")], workloads=pods(count))


def write(db: Database, snapshot: Snapshot, run_id: int = 1) -> SqlStore:
    with db.write_session() as session:
        store = SqlStore(session)
        source_id = store.source_id("k3s", "kubernetes", None)
        run = store.start_run(source_id)
        reconcile(snapshot, store, source_id=source_id, run_id=run)
        return store


def stored_changes(db: Database) -> list[Change]:
    with db.session() as session:
        return list(session.execute(select(Change).order_by(Change.id)).scalars())


def test_a_delta_updates_what_it_names_and_removes_only_what_was_deleted(db: Database) -> None:
    write(db, full())
    delta = Snapshot.changes()
    changed = Workload("pod", "uid-3", "web-3", namespace="default", status="Failed", host=Ref("node", "n1"))
    delta.workloads.append(changed)
    delta.attribute("workload", changed, Cause(CauseKind.KUBERNETES, actor="kubelet", action="Update"))
    delta.delete("workload", "pod", "uid-7", Cause(CauseKind.KUBERNETES, actor="kube-controller-manager"))
    write(db, delta)

    with db.session() as session:
        live = {w.external_id: w for w in session.execute(select(WorkloadRow)).scalars()}
    assert live["uid-3"].status == "Failed" and live["uid-3"].host_id is not None  # its link resolved
    assert live["uid-7"].removed_at is not None
    assert sum(w.removed_at is not None for w in live.values()) == 1  # nothing else: a delta reads no scope
    latest = stored_changes(db)[-2:]
    assert [(c.action, c.external_id) for c in latest] == [("updated", "uid-3"), ("removed", "uid-7")]
    assert latest[0].cause == {"kind": "kubernetes", "actor": "kubelet", "action": "Update"}
    assert describe(latest[1].cause) == "kube-controller-manager"


def test_a_delta_looks_up_only_the_objects_it_names(db: Database) -> None:
    write(db, full(2000))
    delta = Snapshot.changes()
    delta.workloads.append(Workload("pod", "uid-1", "web-1", namespace="default", status="Pending"))
    with db.write_session() as session:
        store = SqlStore(session)
        state = store.load_state(store.source_id("k3s", "kubernetes", None), {"workload": {("pod", "uid-1")}})
    assert list(state.objects["workload"]) == [("pod", "uid-1")] and not state.objects["host"]
    write(db, delta)
    assert stored_changes(db)[-1].diff == {"host": ["node:n1", None], "status": ["Running", "Pending"]}


def test_a_cause_is_stored_only_with_a_change_and_an_unchanged_object_writes_nothing(db: Database) -> None:
    write(db, full(3))
    before = len(stored_changes(db))
    delta = Snapshot.changes()
    same = pods(3)[0]
    delta.workloads.append(same)
    delta.attribute("workload", same, STOPPED_BY_TASK)
    write(db, delta)
    assert len(stored_changes(db)) == before


def test_a_deleted_object_that_is_already_gone_or_unknown_writes_nothing(db: Database) -> None:
    write(db, full(3))
    delta = Snapshot.changes()
    delta.delete("workload", "pod", "uid-1")
    write(db, delta)
    count = len(stored_changes(db))
    again = Snapshot.changes()
    again.delete("workload", "pod", "uid-1")
    again.delete("workload", "pod", "never-seen")
    write(db, again)
    assert len(stored_changes(db)) == count


def test_a_relisted_scope_in_a_delta_is_reconciled_whole(db: Database) -> None:
    """A watch that expired (410 Gone) relists its kind: what the relist lacks is gone."""
    write(db, full(5))
    from inventory.records import Scope

    relist = Snapshot.changes()
    relist.workloads.extend(pods(3))
    relist.read(Scope("workload", "pod"))
    write(db, relist)
    removed = [c.external_id for c in stored_changes(db) if c.action == "removed"]
    assert removed == ["uid-3", "uid-4"]


def test_full_sync_causes_reach_created_and_removed_rows() -> None:
    store = MemoryStore()
    first = full(2)
    first.attribute("host", first.hosts[0], STOPPED_BY_TASK)
    reconcile(first, store, source_id=1, run_id=1)
    second = full(1)
    second.causes[("workload", "pod", "uid-1")] = Cause(CauseKind.DOCKER_EVENT, action="destroy")
    reconcile(second, store, source_id=1, run_id=2)
    by_action = {(c.change.action, c.change.external_id): c.change.cause for c in store.changes}
    assert by_action[("created", "n1")] == STOPPED_BY_TASK.to_json()
    assert by_action[("removed", "uid-1")] == {"kind": "docker_event", "action": "destroy"}


@pytest.mark.parametrize(
    ("cause", "line"),
    [
        (None, "unknown"),
        (STOPPED_BY_TASK.to_json(), "root@pam qmstop"),
        (
            Cause(CauseKind.TOOL_CALL, actor="agent-7", on_behalf_of="alice", action="docker.stop", ref="12").to_json(),
            "agent-7 (for alice) docker.stop #12",
        ),
        (Cause(CauseKind.DOCKER_EVENT, action="die", detail={"exitCode": "137"}).to_json(), "docker die exitCode=137"),
        (
            Cause(CauseKind.PROXMOX_TASK, actor="root@pam", action="vzdump", inferred=True).to_json(),
            "root@pam vzdump (inferred)",
        ),
        ({"kind": "from-a-later-version"}, "unknown"),
    ],
)
def test_the_by_column_says_who_in_one_line(cause: dict[str, object] | None, line: str) -> None:
    assert describe(cause) == line


def test_a_cause_round_trips_through_its_stored_shape() -> None:
    assert Cause.from_json(STOPPED_BY_TASK.to_json()) == STOPPED_BY_TASK
