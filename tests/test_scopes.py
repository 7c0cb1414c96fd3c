"""Completeness per scope: removal decided per scope read, unread details kept stale, warnings not failures.

The logic on the in-memory store; the same on SQLite and PostgreSQL through the store
contract (tests/test_store_contract.py) and through a source run here (the ``db`` fixture).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from itertools import count

from sqlalchemy import select

from inventory.connector import Connector, SourceConfig
from inventory.outcome import SyncStatus
from inventory.queries import list_sources
from inventory.reconcile import ReconcileResult, reconcile
from inventory.records import Host, Ref, Scope, Service, Snapshot, Workload, record_hash
from inventory.storage.database import Database
from inventory.storage.memory import MemoryStore
from inventory.storage.models import Change, HostRow, SyncRun
from inventory.sync import sync_source
from inventory.timeutil import utcnow

T0 = utcnow()


class Engine:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.runs = count(1)

    def sync(self, snapshot: Snapshot) -> ReconcileResult:
        run_id = next(self.runs)
        return reconcile(snapshot, self.store, source_id=1, run_id=run_id, now=T0 + timedelta(minutes=run_id))

    def live(self, object_type: str) -> set[str]:
        return {o.external_id for o in self.store.objects[object_type].values() if o.removed_at is None}

    def change_actions(self) -> list[tuple[str, str]]:
        return [(c.change.external_id, c.change.action) for c in self.store.changes]


def pods(*ids_and_namespaces: tuple[str, str]) -> list[Workload]:
    return [Workload("pod", pod_id, pod_id, namespace=ns) for pod_id, ns in ids_and_namespaces]


NODE = Host(
    "node",
    "c/pve1",
    "pve1",
    status="online",
    addresses=("10.0.0.1",),
    attributes={"cpu_model": "Xeon", "sockets": 2, "kernel": "6.8"},
)


def test_a_complete_scope_removes_while_another_scope_failed() -> None:
    engine = Engine()
    engine.sync(Snapshot(workloads=pods(("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b"))))
    snapshot = Snapshot(workloads=pods(("a1", "a"), ("b1", "b")))
    snapshot.read(Scope("workload", "pod", "a"))
    snapshot.fail("pods in namespace b", "HTTP 500")

    result = engine.sync(snapshot)

    assert result.removed == 1
    assert engine.live("workload") == {"a1", "b1", "b2"}


def test_a_kept_object_is_updated_if_it_lives_and_else_neither_made_nor_removed() -> None:
    engine = Engine()
    engine.sync(Snapshot(hosts=[Host("vm", "v1", "v1", status="running"), Host("vm", "v3", "v3")]))
    # Whether v1, v2 and v3 exist is unknown this time; the scope of vms is read completely.
    snapshot = Snapshot(hosts=[Host("vm", "v1", "v1", status="unknown"), Host("vm", "v2", "v2")])
    snapshot.read(Scope("host", "vm"))
    for external_id in ("v1", "v2", "v3"):
        snapshot.keep("host", "vm", external_id)

    result = engine.sync(snapshot)

    assert (result.created, result.updated, result.removed) == (0, 1, 0)
    assert engine.live("host") == {"v1", "v3"}  # v2 not made up, v3 not removed
    assert (
        next(o for o in engine.store.objects["host"].values() if o.external_id == "v1").columns["status"] == "unknown"
    )


def test_nothing_outside_the_scopes_read_is_removed() -> None:
    engine = Engine()
    host = Host("node", "n1", "n1")
    engine.sync(Snapshot(hosts=[host], workloads=pods(("p1", "a"), ("p2", "a")), services=[Service("svc", "s1", "s")]))
    snapshot = Snapshot(workloads=pods(("p1", "a")))  # no hosts, no services: neither was read
    snapshot.read(Scope("workload"))

    result = engine.sync(snapshot)

    assert result.removed == 1
    assert (engine.live("host"), engine.live("workload"), engine.live("service")) == ({"n1"}, {"p1"}, {"s1"})


def test_without_scopes_an_incomplete_snapshot_still_removes_nothing() -> None:
    engine = Engine()
    engine.sync(Snapshot(workloads=pods(("p1", "a"), ("p2", "a"))))
    snapshot = Snapshot(workloads=pods(("p1", "a")))
    snapshot.fail("pods", "HTTP 500")

    assert engine.sync(snapshot).removed == 0
    assert engine.live("workload") == {"p1", "p2"}


def test_scope_covers_every_kind_and_namespace_when_it_names_none() -> None:
    assert Scope("workload").covers("workload", "pod", "x")
    assert Scope("workload", "pod").covers("workload", "pod", None)
    assert not Scope("workload", "pod", "a").covers("workload", "pod", "b")
    assert not Scope("workload", "pod").covers("workload", "deployment", None)
    assert not Scope("host").covers("workload", "pod", None)


def test_an_unread_detail_keeps_its_value_writes_no_change_and_marks_the_details_stale() -> None:
    engine = Engine()
    engine.sync(Snapshot(hosts=[NODE]))
    hiccup = Host(
        "node",
        "c/pve1",
        "pve1",
        status="online",
        attributes={},
        unread=frozenset({"addresses", "attributes.cpu_model", "attributes.sockets", "attributes.kernel"}),
    )

    result = engine.sync(Snapshot(hosts=[hiccup]))

    assert (result.updated, result.unchanged) == (0, 1)
    (stored,) = engine.store.objects["host"].values()
    assert stored.columns["addresses"] == ["10.0.0.1"]
    assert stored.columns["attributes"] == {"cpu_model": "Xeon", "sockets": 2, "kernel": "6.8"}
    assert stored.details_stale_since == T0 + timedelta(minutes=2)
    engine.sync(Snapshot(hosts=[hiccup]))
    assert stored.details_stale_since == T0 + timedelta(minutes=2)  # since the first hiccup

    engine.sync(Snapshot(hosts=[NODE]))

    assert stored.details_stale_since is None
    assert engine.change_actions() == [("c/pve1", "created")]


def test_a_change_beside_an_unread_detail_is_written_and_the_unread_one_is_not_in_its_diff() -> None:
    engine = Engine()
    engine.sync(Snapshot(hosts=[NODE]))
    offline = Host(
        "node",
        "c/pve1",
        "pve1",
        status="offline",
        addresses=("10.0.0.1",),
        attributes={"kernel": "6.8"},
        unread=frozenset({"attributes.cpu_model", "attributes.sockets"}),
    )

    result = engine.sync(Snapshot(hosts=[offline]))

    assert result.updated == 1
    assert engine.store.changes[-1].change.diff == {"status": ["online", "offline"]}


def test_unread_links_and_members_keep_their_stored_targets() -> None:
    engine = Engine()
    node = Host("node", "n1", "n1")
    pod = Workload("pod", "p1", "p1", host=Ref("node", "n1"))
    engine.sync(
        Snapshot(hosts=[node], workloads=[pod], services=[Service("svc", "s1", "s", members=(Ref("pod", "p1"),))])
    )

    result = engine.sync(
        Snapshot(
            hosts=[node],
            workloads=[Workload("pod", "p1", "p1", unread=frozenset({"host"}))],
            services=[Service("svc", "s1", "s", unread=frozenset({"members"}))],
        )
    )

    assert (result.updated, result.unchanged) == (0, 3)


def test_a_new_object_with_unread_details_is_created_stale_with_what_it_says() -> None:
    engine = Engine()
    engine.sync(Snapshot(hosts=[Host("node", "n1", "n1", unread=frozenset({"attributes.kernel"}))]))

    (stored,) = engine.store.objects["host"].values()
    assert stored.details_stale_since is not None and stored.columns["attributes"] == {}


def test_unread_is_no_content_digests_stay_as_they_were() -> None:
    # Digests computed before records carried ``unread``: an upgrade rewrites nothing.
    assert record_hash(Host("node", "c/n1", "n1", status="up", mac_addresses=("aa",), attributes={"x": 1})) == (
        "2a463bb155f583e50a57d465be55aa55"
    )
    assert (
        record_hash(Workload("pod", "u1", "p", namespace="d", host=Ref("node", "n")))
        == "0f7e6e75d9f1aad9bed167280078c545"
    )
    assert record_hash(Service("svc", "s1", "s", members=(Ref("pod", "u1"),), unread=frozenset({"status"}))) == (
        "d4c587bf475c3020b8594e47a6aac44b"
    )


# -- through a source run, on SQLite and PostgreSQL ----------------------------------------------


class _Scripted(Connector):
    type_name = "scripted"

    def __init__(self, config: SourceConfig, script: Callable[[], Snapshot]) -> None:
        super().__init__(config)
        self.script = script

    def collect(self) -> Snapshot:
        return self.script()


def _connector(script: Callable[[], Snapshot]) -> _Scripted:
    return _Scripted(SourceConfig(type="scripted", name="lab"), script)


def test_warnings_are_a_success_kept_in_the_run_and_counted_fresh(db: Database) -> None:
    def offline_node() -> Snapshot:
        snapshot = Snapshot(hosts=[NODE])
        snapshot.read(Scope("host"))
        snapshot.warn("node pve2", "offline: its guests' details are the cluster list's")
        return snapshot

    outcome = sync_source(db, _connector(offline_node))

    assert outcome.status == SyncStatus.SUCCESS and outcome.ok, outcome.error
    assert outcome.warnings == ["source 'lab': node pve2: offline: its guests' details are the cluster list's"]
    assert "1 warning" in outcome.describe()
    with db.session() as session:
        run = session.scalars(select(SyncRun)).one()
        assert (run.status, run.error) == ("success", None)
        assert run.warnings is not None and "pve2: offline" in run.warnings
        (source,) = list_sources(session)
        assert source["last_success_at"] is not None


def test_a_failed_scope_is_partial_and_still_removes_in_the_scopes_read(db: Database) -> None:
    snapshots = iter([Snapshot(workloads=pods(("a1", "a"), ("a2", "a"), ("b1", "b")))])

    def later() -> Snapshot:
        snapshot = Snapshot(workloads=pods(("a1", "a")))
        snapshot.read(Scope("workload", "pod", "a"))
        snapshot.fail("pods in namespace b", "HTTP 403")
        return snapshot

    assert sync_source(db, _connector(lambda: next(snapshots))).ok
    outcome = sync_source(db, _connector(later))

    assert outcome.status == SyncStatus.PARTIAL and outcome.result is not None
    assert outcome.result.removed == 1
    with db.session() as session:
        removed = session.scalars(select(Change.external_id).where(Change.action == "removed")).all()
    assert removed == ["a2"]


def test_an_unread_detail_writes_no_change_row_and_the_row_says_stale(db: Database) -> None:
    snapshots = iter(
        [
            Snapshot(hosts=[NODE]),
            Snapshot(
                hosts=[
                    Host(
                        "node",
                        "c/pve1",
                        "pve1",
                        status="online",
                        unread=frozenset(
                            {"addresses", "attributes.cpu_model", "attributes.sockets", "attributes.kernel"}
                        ),
                    )
                ]
            ),
            Snapshot(hosts=[NODE]),
        ]
    )
    connector = _connector(lambda: next(snapshots))

    assert sync_source(db, connector).ok
    hiccup = sync_source(db, connector)
    with db.session() as session:
        row = session.scalars(select(HostRow)).one()
        assert (row.addresses, row.attributes["cpu_model"]) == (["10.0.0.1"], "Xeon")
        assert row.details_stale_since is not None
    recovered = sync_source(db, connector)

    assert hiccup.result is not None and recovered.result is not None
    assert (hiccup.result.updated, recovered.result.updated) == (0, 0)
    with db.session() as session:
        assert session.scalars(select(HostRow.details_stale_since)).one() is None
        assert session.scalars(select(Change.action)).all() == ["created"]
