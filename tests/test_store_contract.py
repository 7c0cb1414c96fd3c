"""One contract for every Store: the in-memory store, and the SQL store on SQLite and on PostgreSQL.

Each test runs against all three; reconcile may rely on nothing a store does beyond this.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from inventory.reconcile import reconcile
from inventory.records import Host, Record, Ref, Scope, Service, Snapshot, Workload, record_hash
from inventory.schema import SCHEMA
from inventory.storage.database import Database, open_database
from inventory.storage.memory import MemoryStore
from inventory.storage.models import Change
from inventory.storage.protocol import ChangeRecord, ObjectWrite, Store, WritePlan
from inventory.storage.store import SqlStore
from inventory.timeutil import utcnow

T0 = utcnow().replace(microsecond=0)


@dataclass
class Harness:
    """A store under test: each ``store()`` block is one transaction; ``changes()`` reads the history back."""

    memory: MemoryStore | None = None
    db: Database | None = None
    runs: list[int] = field(default_factory=list)

    @contextmanager
    def store(self) -> Iterator[Store]:
        if self.memory is not None:
            yield self.memory
            return
        assert self.db is not None
        with self.db.write_session() as session:
            yield SqlStore(session)

    def changes(self) -> list[tuple[Any, ...]]:
        if self.memory is not None:
            found = [(c.source_id, c.run_id, c.at, c.change) for c in self.memory.changes]
        else:
            assert self.db is not None
            with self.db.session() as session:
                found = [
                    (
                        c.source_id,
                        c.sync_run_id,
                        c.at,
                        ChangeRecord(c.object_type, c.object_id, c.kind, c.external_id, c.name, c.action, c.diff),
                    )
                    for c in session.execute(select(Change).order_by(Change.id)).scalars()
                ]
        return found


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "memory":
        yield Harness(memory=MemoryStore())
        return
    url = request.getfixturevalue("migrated_sqlite_url" if request.param == "sqlite" else "migrated_postgres_url")
    db = open_database(url, migrate=True)
    try:
        yield Harness(db=db)
    finally:
        db.dispose()


def write(
    object_id: int, record: Record, links: dict[str, int | None] | None = None, members: Sequence[int] = ()
) -> ObjectWrite:
    spec = SCHEMA.of(record)
    return ObjectWrite(
        spec.name, object_id, record, spec.canonical_fields(record), record_hash(record), links or {}, members
    )


def plan(source_id: int = 1, run_id: int = 1, now: datetime = T0, **groups: Any) -> WritePlan:
    return WritePlan(source_id=source_id, run_id=run_id, now=now, **groups)


def test_allocated_ids_are_fresh_blocks(harness: Harness) -> None:
    with harness.store() as store:
        assert store.allocate_ids("workload", 0) == []
        first = store.allocate_ids("workload", 3)
        store.apply(plan(creates=[write(i, Workload("pod", f"p{i}", f"pod-{i}")) for i in first]))
    with harness.store() as store:
        second = store.allocate_ids("workload", 2)
        hosts = store.allocate_ids("host", 1)
    assert len(set(first)) == 3 and len(second) == 2
    assert min(second) > max(first)
    assert len(hosts) == 1


def test_created_objects_read_back_as_written(harness: Harness) -> None:
    with harness.store() as store:
        (host_id,) = store.allocate_ids("host", 1)
        dep_id, pod_id = store.allocate_ids("workload", 2)
        (svc_id,) = store.allocate_ids("service", 1)
        host = Host(
            "node",
            "n1",
            "node-a",
            status="Ready",
            mac_addresses=("aa", "bb"),
            addresses=("10.0.0.1",),
            labels={"zone": "a"},
        )
        dep = Workload("deployment", "d1", "web", namespace="prod", attributes={"replicas": 2, "images": ["nginx"]})
        pod = Workload("pod", "p1", "web-1", namespace="prod", host=Ref("node", "n1"), parent=Ref("deployment", "d1"))
        svc = Service("service", "s1", "web", namespace="prod", members=(Ref("pod", "p1"),))
        writes = [
            write(host_id, host),
            write(dep_id, dep),
            write(pod_id, pod, {"host": host_id, "parent": dep_id}),
            write(svc_id, svc, members=[pod_id]),
        ]
        store.apply(plan(creates=writes))
    with harness.store() as store:
        state = store.load_state(1)
        assert state.objects["workload"][("pod", "p1")].id == pod_id
        assert (state.objects["host"][("node", "n1")].content_hash, state.objects["host"][("node", "n1")].removed) == (
            record_hash(host),
            False,
        )
        assert state.objects["service"][("service", "s1")].name == "web"
        assert store.load_state(2).objects == {"host": {}, "workload": {}, "service": {}}
        assert store.load_fields("host", [host_id]) == {host_id: writes[0].fields}
        assert store.load_fields("workload", [pod_id, dep_id, 999_999]) == {
            pod_id: writes[2].fields,
            dep_id: writes[1].fields,
        }
        assert store.load_fields("service", [svc_id]) == {svc_id: writes[3].fields}
        assert writes[2].fields["host"] == "node:n1" and writes[3].fields["members"] == ["pod:p1"]


def test_updates_overwrite_and_replace_members(harness: Harness) -> None:
    with harness.store() as store:
        pod_ids = store.allocate_ids("workload", 3)
        (svc_id,) = store.allocate_ids("service", 1)
        pods = [Workload("pod", f"p{i}", f"web-{i}") for i in range(3)]
        svc = Service("service", "s1", "web", members=(Ref("pod", "p0"), Ref("pod", "p1")))
        store.apply(
            plan(
                creates=[
                    *(write(i, p) for i, p in zip(pod_ids, pods, strict=True)),
                    write(svc_id, svc, members=pod_ids[:2]),
                ]
            )
        )
    later = T0 + timedelta(minutes=1)
    with harness.store() as store:
        renamed = Workload("pod", "p0", "web-0-renamed", status="Running", parent=Ref("pod", "p2"), labels={"a": "1"})
        shrunk = Service("service", "s1", "web", members=(Ref("pod", "p2"),))
        store.apply(
            plan(
                run_id=2,
                now=later,
                updates=[
                    write(pod_ids[0], renamed, {"host": None, "parent": pod_ids[2]}),
                    write(svc_id, shrunk, members=[pod_ids[2]]),
                ],
            )
        )
    with harness.store() as store:
        fields = store.load_fields("workload", [pod_ids[0]])[pod_ids[0]]
        assert (fields["name"], fields["status"], fields["parent"], fields["labels"]) == (
            "web-0-renamed",
            "Running",
            "pod:p2",
            {"a": "1"},
        )
        assert store.load_fields("service", [svc_id])[svc_id]["members"] == ["pod:p2"]
        assert store.load_state(1).objects["workload"][("pod", "p0")].content_hash == record_hash(renamed)


def test_removal_and_revival(harness: Harness) -> None:
    pod = Workload("pod", "p1", "web-1")
    with harness.store() as store:
        (pod_id,) = store.allocate_ids("workload", 1)
        store.apply(plan(creates=[write(pod_id, pod)]))
    with harness.store() as store:
        store.apply(plan(run_id=2, removals={"host": [], "workload": [pod_id], "service": []}))
    with harness.store() as store:
        # A removed object is not in the state a sync starts from; it is found by its key, as removed.
        assert store.load_state(1).objects["workload"] == {}
        wanted = {"workload": [("pod", "p1"), ("pod", "never-stored")], "host": [("pod", "p1")]}
        found = store.load_removed(1, wanted)
        assert found["workload"][("pod", "p1")].removed is True and found["workload"][("pod", "p1")].id == pod_id
        assert ("pod", "never-stored") not in found["workload"] and found.get("host", {}) == {}
        assert store.load_removed(2, {"workload": [("pod", "p1")]}).get("workload", {}) == {}  # another source's
        store.apply(plan(run_id=3, updates=[write(pod_id, pod)]))
    with harness.store() as store:
        assert store.load_state(1).objects["workload"][("pod", "p1")].removed is False
        assert store.load_removed(1, {"workload": [("pod", "p1")]}).get("workload", {}) == {}  # live: not removed


def test_changes_are_appended_with_their_run(harness: Harness) -> None:
    created = ChangeRecord("host", 7, "node", "n1", "node-a", "created")
    updated = ChangeRecord(
        "host", 7, "node", "n1", "node-a", "updated", {"status": ["Ready", "NotReady"], "labels.zone": [None, "b"]}
    )
    with harness.store() as store:
        store.apply(plan(source_id=3, run_id=10, changes=[created]))
    with harness.store() as store:
        store.apply(plan(source_id=3, run_id=11, now=T0 + timedelta(seconds=5), changes=[updated]))
    assert harness.changes() == [(3, 10, T0, created), (3, 11, T0 + timedelta(seconds=5), updated)]


def lab(pods: int, *, status: str = "Running", complete: bool = True) -> Snapshot:
    return Snapshot(
        hosts=[Host("node", "n1", "node-a", mac_addresses=("bb", "aa"), backed_by=Ref("vm", "101"))],
        workloads=[Workload("vm", "101", "vm-101"), Workload("deployment", "d1", "web")]
        + [
            Workload(
                "pod",
                f"p{i}",
                f"web-{i}",
                status=status,
                host=Ref("node", "n1"),
                parent=Ref("deployment", "d1"),
                attributes={"i": i},
            )
            for i in range(pods)
        ],
        services=[Service("service", "s1", "web", members=tuple(Ref("pod", f"p{i}") for i in reversed(range(pods))))],
        complete=complete,
    )


def test_a_sequence_of_reconciles_gives_the_same_history_on_every_store(harness: Harness) -> None:
    """Reconcile drives the store through creates, updates, removals and revivals; the history it records must be
    the same on every store, and be what reconcile on the in-memory store records."""
    snapshots = [lab(3), lab(3), lab(2, status="CrashLoopBackOff"), lab(1, complete=False), lab(3)]
    reference = MemoryStore()
    for run_id, snapshot in enumerate(snapshots, start=1):
        now = T0 + timedelta(minutes=run_id)
        reconcile(snapshot, reference, source_id=1, run_id=run_id, now=now)
        with harness.store() as store:
            reconcile(snapshot, store, source_id=1, run_id=run_id, now=now)

    def history(changes: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [(run, c.object_type, c.kind, c.external_id, c.action, c.diff) for _, run, _, c in changes]

    expected = history([(c.source_id, c.run_id, c.at, c.change) for c in reference.changes])
    assert history(harness.changes()) == expected
    crash, running = ["Running", "CrashLoopBackOff"], ["CrashLoopBackOff", "Running"]
    assert [
        (run, external_id, action, diff) for run, _, _, external_id, action, diff in expected if action != "created"
    ] == [
        (3, "p0", "updated", {"status": crash}),
        (3, "p1", "updated", {"status": crash}),
        (3, "s1", "updated", {"members": [["pod:p0", "pod:p1", "pod:p2"], ["pod:p0", "pod:p1"]]}),
        (3, "p2", "removed", None),
        (4, "p0", "updated", {"status": running}),
        (4, "s1", "updated", {"members": [["pod:p0", "pod:p1"], ["pod:p0"]]}),
        (5, "p1", "updated", {"status": running}),
        (5, "p2", "revived", {}),
        (5, "s1", "updated", {"members": [["pod:p0"], ["pod:p0", "pod:p1", "pod:p2"]]}),
    ]


def test_details_go_stale_once_and_fresh_again(harness: Harness) -> None:
    with harness.store() as store:
        (fresh_id, stale_id) = store.allocate_ids("host", 2)
        fresh, stale = Host("node", "n1", "node-a"), Host("node", "n2", "node-b")
        store.apply(plan(creates=[write(fresh_id, fresh), _stale(write(stale_id, stale))]))
    with harness.store() as store:
        hosts = store.load_state(1).objects["host"]
        assert (hosts[("node", "n1")].stale, hosts[("node", "n2")].stale) == (False, True)
        store.apply(plan(run_id=2, stale={"host": [fresh_id, stale_id], "workload": [], "service": []}))
    with harness.store() as store:
        assert all(o.stale for o in store.load_state(1).objects["host"].values())
        store.apply(plan(run_id=3, fresh={"host": [stale_id], "workload": [], "service": []}))
    with harness.store() as store:
        hosts = store.load_state(1).objects["host"]
        assert (hosts[("node", "n1")].stale, hosts[("node", "n2")].stale) == (True, False)
    assert harness.changes() == []


def test_the_stored_namespace_decides_which_scope_an_object_is_in(harness: Harness) -> None:
    with harness.store() as store:
        ids = store.allocate_ids("workload", 2)
        pods = [Workload("pod", "a1", "a1", namespace="a"), Workload("pod", "b1", "b1", namespace="b")]
        store.apply(plan(creates=[write(i, p) for i, p in zip(ids, pods, strict=True)]))
    snapshot = Snapshot()
    snapshot.read(Scope("workload", "pod", "a"))
    snapshot.fail("pods in b", "HTTP 403")
    with harness.store() as store:
        result = reconcile(snapshot, store, source_id=1, run_id=2, allow_empty=True, now=T0)
    with harness.store() as store:
        live = {k[1] for k, o in store.load_state(1).objects["workload"].items() if not o.removed}
    assert (result.removed, live) == (1, {"b1"})


def _stale(object_write: ObjectWrite) -> ObjectWrite:
    object_write.stale = True
    return object_write
