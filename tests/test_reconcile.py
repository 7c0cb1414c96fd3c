"""Reconcile against a real database, on SQLite and PostgreSQL: every case of the core issue."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from inventory.connector import Connector, SourceConfig
from inventory.errors import SourceError
from inventory.outcome import SourceOutcome
from inventory.reconcile import ReconcileResult
from inventory.records import Host, Ref, Service, Snapshot, Workload
from inventory.storage.database import Database
from inventory.storage.models import Change, HostRow, ServiceMember, ServiceRow, SyncRun, WorkloadRow
from inventory.storage.store import SqlStore
from inventory.sync import sync_source


class ScriptedConnector(Connector):
    """A connector whose next answer the test sets: the far side of the wire is the test itself."""

    type_name = "scripted"

    def __init__(self, name: str = "src", answer: Snapshot | Exception | None = None) -> None:
        super().__init__(SourceConfig(type="scripted", name=name))
        self.answer: Snapshot | Exception = answer or Snapshot()

    def collect(self) -> Snapshot:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def lab(
    *, pods: int = 3, node_name: str = "node-a", complete: bool = True, extra: list[Workload] | None = None
) -> Snapshot:
    workloads = [Workload("deployment", "dep-1", "web", namespace="default", status="available")]
    workloads += [
        Workload(
            "pod",
            f"pod-{i}",
            f"web-{i}",
            namespace="default",
            status="Running",
            host=Ref("node", "n1"),
            parent=Ref("deployment", "dep-1"),
            labels={"app": "web"},
        )
        for i in range(pods)
    ]
    workloads += extra or []
    return Snapshot(
        hosts=[Host("node", "n1", node_name, status="Ready", attributes={"cpu": 4})],
        workloads=workloads,
        services=[
            Service(
                "service",
                "svc-1",
                "web",
                namespace="default",
                members=tuple(Ref("pod", f"pod-{i}") for i in range(pods)),
            )
        ],
        complete=complete,
    )


def rows(db: Database, model: Any, *, live_only: bool = False) -> list[Any]:
    with db.session() as session:
        stmt = select(model).order_by(model.id)
        if live_only:
            stmt = stmt.where(model.removed_at.is_(None))
        return list(session.execute(stmt).scalars())


def result_of(outcome: SourceOutcome) -> ReconcileResult:
    assert outcome.result is not None, outcome.error
    return outcome.result


def changes(db: Database) -> list[tuple[str, str, str]]:
    with db.session() as session:
        return [
            (c.object_type, c.action, c.name) for c in session.execute(select(Change).order_by(Change.id)).scalars()
        ]


def test_first_sync_creates_everything_with_links(db: Database) -> None:
    outcome = sync_source(db, ScriptedConnector(answer=lab()))
    assert outcome.status == "success"
    assert (result_of(outcome).created, result_of(outcome).unchanged) == (6, 0)
    host = rows(db, HostRow)[0]
    workloads = {w.external_id: w for w in rows(db, WorkloadRow)}
    assert workloads["pod-0"].host_id == host.id
    assert workloads["pod-0"].parent_id == workloads["dep-1"].id
    assert workloads["pod-0"].labels == {"app": "web"}
    with db.session() as session:
        members = session.execute(select(func.count()).select_from(ServiceMember)).scalar_one()
    assert members == 3
    assert [a for _, a, _ in changes(db)] == ["created"] * 6


def test_unchanged_resync_writes_no_object_row(db: Database) -> None:
    sync_source(db, ScriptedConnector(answer=lab()))
    before = {w.id: w.changed_at for w in rows(db, WorkloadRow)}
    outcome = sync_source(db, ScriptedConnector(answer=lab()))
    assert result_of(outcome).changed == 0 and result_of(outcome).unchanged == 6
    assert {w.id: w.changed_at for w in rows(db, WorkloadRow)} == before
    assert len(changes(db)) == 6  # only the first sync's creations
    # Reads plus bookkeeping only: state per table, no inserts or updates of objects.
    assert result_of(outcome).statements <= 3


def test_update_records_changed_fields_old_to_new(db: Database) -> None:
    sync_source(db, ScriptedConnector(answer=lab()))
    snapshot = lab()
    snapshot.hosts[0] = Host("node", "n1", "node-a", status="NotReady", attributes={"cpu": 8})
    outcome = sync_source(db, ScriptedConnector(answer=snapshot))
    assert (result_of(outcome).updated, result_of(outcome).unchanged) == (1, 5)
    with db.session() as session:
        change = session.execute(select(Change).where(Change.action == "updated")).scalar_one()
    assert change.diff == {"status": ["Ready", "NotReady"], "attributes.cpu": [4, 8]}


def test_rename_keeps_one_object(db: Database) -> None:
    sync_source(db, ScriptedConnector(answer=lab()))
    sync_source(db, ScriptedConnector(answer=lab(node_name="node-renamed")))
    hosts = rows(db, HostRow)
    assert len(hosts) == 1 and hosts[0].name == "node-renamed"
    assert changes(db)[-1] == ("host", "updated", "node-renamed")
    with db.session() as session:
        diff = session.execute(select(Change.diff).where(Change.action == "updated")).scalar_one()
    assert diff == {"name": ["node-a", "node-renamed"]}


def test_a_sync_reads_removed_rows_only_by_key_and_still_revives_them_under_their_old_ids(db: Database) -> None:
    sync_source(db, ScriptedConnector(answer=lab(pods=3)))
    ids = {w.external_id: w.id for w in rows(db, WorkloadRow)}
    sync_source(db, ScriptedConnector(answer=lab(pods=1)))  # pod-1 and pod-2 removed
    with db.write_session() as session:
        store = SqlStore(session)
        assert set(store.load_state(1).objects["workload"]) == {("deployment", "dep-1"), ("pod", "pod-0")}

    # pod-1 comes back; a new pod links to pod-2 (removed, not listed) as its parent, the service lists it.
    orphan = Workload("pod", "pod-9", "web-9", namespace="default", parent=Ref("pod", "pod-2"))
    back = lab(pods=2, extra=[orphan])
    outcome = sync_source(db, ScriptedConnector(answer=back))
    assert result_of(outcome).revived == 1 and result_of(outcome).created == 1
    after = {w.external_id: w for w in rows(db, WorkloadRow)}
    assert after["pod-1"].id == ids["pod-1"] and after["pod-1"].removed_at is None
    assert after["pod-9"].parent_id == ids["pod-2"] and after["pod-2"].removed_at is not None
    assert len(after) == 5  # revived in place: no second row for pod-1
    assert result_of(sync_source(db, ScriptedConnector(answer=back))).changed == 0


def test_two_objects_with_the_same_name_are_both_kept(db: Database) -> None:
    twins = [Workload("vm", "pve/101", "db"), Workload("vm", "pve/102", "db")]
    sync_source(db, ScriptedConnector(answer=lab(extra=twins)))
    assert sorted(w.external_id for w in rows(db, WorkloadRow) if w.name == "db") == ["pve/101", "pve/102"]


def test_vanished_objects_are_removed_and_come_back_revived(db: Database) -> None:
    sync_source(db, ScriptedConnector(answer=lab(pods=3)))
    outcome = sync_source(db, ScriptedConnector(answer=lab(pods=1)))
    assert result_of(outcome).removed == 2
    live = {w.external_id for w in rows(db, WorkloadRow, live_only=True)}
    assert live == {"dep-1", "pod-0"}
    removed = [c for c in changes(db) if c[1] == "removed"]
    assert sorted(removed) == [("workload", "removed", "web-1"), ("workload", "removed", "web-2")]

    outcome = sync_source(db, ScriptedConnector(answer=lab(pods=3)))
    assert result_of(outcome).revived == 2 and result_of(outcome).removed == 0
    assert len(rows(db, WorkloadRow)) == 4  # revived in place, no duplicate rows
    assert len(rows(db, WorkloadRow, live_only=True)) == 4
    assert sum(1 for c in changes(db) if c[1] == "revived") == 2
    with db.session() as session:
        members = session.execute(select(func.count()).select_from(ServiceMember)).scalar_one()
    assert members == 3


def test_incomplete_snapshot_upserts_but_removes_nothing(db: Database) -> None:
    sync_source(db, ScriptedConnector(answer=lab(pods=3)))
    partial = lab(pods=1, complete=False)
    partial.errors.append("pods: HTTP 500 on page 2")
    partial.hosts[0] = Host("node", "n1", "node-a", status="NotReady", attributes={"cpu": 4})
    outcome = sync_source(db, ScriptedConnector(answer=partial))
    assert outcome.status == "partial"
    assert "pods: HTTP 500 on page 2" in (outcome.error or "")
    # The node and the service (its member list shrank) are updated; the unread pods stay.
    assert result_of(outcome).removed == 0 and result_of(outcome).updated == 2
    assert len(rows(db, WorkloadRow, live_only=True)) == 4
    run = rows(db, SyncRun)[-1]
    assert (run.status, run.complete) == ("partial", False)


def test_failed_source_changes_nothing_and_is_recorded(db: Database) -> None:
    sync_source(db, ScriptedConnector(answer=lab()))
    outcome = sync_source(db, ScriptedConnector(answer=SourceError("src", "pods", "HTTP 503 Service Unavailable")))
    assert outcome.status == "failed"
    assert outcome.error == "source 'src', pods: HTTP 503 Service Unavailable"
    assert len(rows(db, WorkloadRow, live_only=True)) == 4
    assert len(changes(db)) == 6
    run = rows(db, SyncRun)[-1]
    assert run.status == "failed" and "HTTP 503" in run.error


def test_connector_bug_is_isolated_as_a_failed_source(db: Database) -> None:
    outcome = sync_source(db, ScriptedConnector(answer=KeyError("metadata")))
    assert outcome.status == "failed"
    assert "KeyError" in (outcome.error or "") and "'src'" in (outcome.error or "")


def test_empty_complete_answer_is_not_everything_gone(db: Database) -> None:
    sync_source(db, ScriptedConnector(answer=lab()))
    outcome = sync_source(db, ScriptedConnector(answer=Snapshot()))
    assert outcome.status == "partial"
    assert result_of(outcome).removed == 0
    assert "--allow-empty" in (outcome.error or "")
    assert len(rows(db, WorkloadRow, live_only=True)) == 4

    outcome = sync_source(db, ScriptedConnector(answer=Snapshot()), allow_empty=True)
    assert outcome.status == "success" and result_of(outcome).removed == 6
    assert rows(db, WorkloadRow, live_only=True) == []


def test_link_to_an_object_that_appears_later_is_filled_in(db: Database) -> None:
    orphan = Snapshot(workloads=[Workload("pod", "p1", "lonely", host=Ref("node", "late"))], complete=False)
    sync_source(db, ScriptedConnector(answer=orphan))
    assert rows(db, WorkloadRow)[0].host_id is None
    arrived = Snapshot(
        hosts=[Host("node", "late", "late-node")], workloads=[Workload("pod", "p1", "lonely", host=Ref("node", "late"))]
    )
    outcome = sync_source(db, ScriptedConnector(answer=arrived))
    assert result_of(outcome).updated == 1
    assert rows(db, WorkloadRow)[0].host_id == rows(db, HostRow)[0].id


def test_duplicate_records_in_one_snapshot_are_kept_once(db: Database) -> None:
    snapshot = Snapshot(workloads=[Workload("pod", "p1", "a"), Workload("pod", "p1", "b")])
    outcome = sync_source(db, ScriptedConnector(answer=snapshot))
    assert result_of(outcome).duplicates == 1
    assert [w.name for w in rows(db, WorkloadRow)] == ["a"]


def test_sources_are_scoped_each_to_its_own_objects(db: Database) -> None:
    sync_source(db, ScriptedConnector("one", lab()))
    sync_source(db, ScriptedConnector("two", lab()))
    outcome = sync_source(
        db, ScriptedConnector("one", Snapshot(hosts=[Host("node", "n1", "node-a")])), allow_empty=True
    )
    assert result_of(outcome).removed == 5
    with db.session() as session:
        stmt = (
            select(WorkloadRow.source_id, func.count())
            .where(WorkloadRow.removed_at.is_(None))
            .group_by(WorkloadRow.source_id)
        )
        live_per_source = dict(session.execute(stmt).all())
    assert list(live_per_source.values()) == [4]


def test_membership_changes_are_recorded(db: Database) -> None:
    sync_source(db, ScriptedConnector(answer=lab(pods=2)))
    snapshot = lab(pods=2)
    snapshot.services[0] = Service("service", "svc-1", "web", namespace="default", members=(Ref("pod", "pod-1"),))
    sync_source(db, ScriptedConnector(answer=snapshot))
    with db.session() as session:
        diff = session.execute(
            select(Change.diff).where(Change.object_type == "service", Change.action == "updated")
        ).scalar_one()
        members = session.execute(select(ServiceMember.workload_id)).scalars().all()
    assert diff == {"members": [["pod:pod-0", "pod:pod-1"], ["pod:pod-1"]]}
    assert len(members) == 1


def test_renamed_source_adopts_its_rows_by_identity(db: Database) -> None:
    first = lab()
    first.identity = "cluster-uid-1"
    sync_source(db, ScriptedConnector("old-name", first))
    again = lab()
    again.identity = "cluster-uid-1"
    outcome = sync_source(db, ScriptedConnector("new-name", again), configured=["new-name"])
    assert result_of(outcome).unchanged == 6 and result_of(outcome).created == 0
    assert len(rows(db, WorkloadRow)) == 4


def test_two_configured_sources_with_one_identity_stay_apart(db: Database) -> None:
    a, b = lab(), lab()
    a.identity = b.identity = "cloned-engine-id"
    sync_source(db, ScriptedConnector("a", a), configured=["a", "b"])
    outcome = sync_source(db, ScriptedConnector("b", b), configured=["a", "b"])
    assert result_of(outcome).created == 6
    assert len(rows(db, WorkloadRow)) == 8


@pytest.mark.parametrize("pods", [0, 1500])
def test_large_and_empty_service_membership(db: Database, pods: int) -> None:
    # 1500 members crosses the 1000-id chunking of set-based statements.
    outcome = sync_source(db, ScriptedConnector(answer=lab(pods=pods)))
    assert result_of(outcome).created == pods + 3
    shrunk = sync_source(db, ScriptedConnector(answer=lab(pods=pods // 2)))
    assert result_of(shrunk).removed == pods - pods // 2
    with db.session() as session:
        svc = session.execute(select(ServiceRow)).scalar_one()
        count = session.execute(
            select(func.count()).select_from(ServiceMember).where(ServiceMember.service_id == svc.id)
        ).scalar_one()
    assert count == pods // 2


def test_concurrent_syncs_of_two_sources_on_postgres_do_not_collide(migrated_postgres_url: str) -> None:
    """Id blocks come from the sequence under a short lock: two writers neither overlap nor wait on each other."""
    import threading

    from inventory.storage.database import open_database

    db = open_database(migrated_postgres_url, migrate=True)
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            for pods in (200, 400):
                outcome = sync_source(db, ScriptedConnector(name, lab(pods=pods)))
                assert outcome.status == "success", outcome.error
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"s{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = [w.id for w in rows(db, WorkloadRow)]
    assert len(ids) == len(set(ids)) == 3 * 401  # a deployment and 400 pods per source
    db.dispose()
