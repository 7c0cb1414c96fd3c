"""Following a Proxmox VE cluster (``ProxmoxConnector.watch``) through the loopback fake and the real proxmoxer.

Proxmox VE has no change stream: watch polls /cluster/resources and /cluster/tasks every
``poll_interval`` and reads details only of what changed. A change done as the web UI would (the
fake's cluster methods leave the task pve-manager lists) is yielded within about one interval, with
the task's user, type and UPID as its cause; an idle cluster yields nothing and costs two calls a
poll; a node going offline keeps its guests; ``stop`` ends the watch within a second. Deltas are
reconciled into SQLite and PostgreSQL, as the core does.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from connectors.proxmox.api import open_client
from connectors.proxmox.config import ProxmoxConfig
from connectors.proxmox.connector import ProxmoxConnector
from connectors.proxmox.fake.model import FakeCluster, FakeGuest, FakeNode, FakeTask, mac_for
from connectors.proxmox.fake.mutations import MutableFakeProxmox
from connectors.proxmox.fake.server import FakeProxmox
from connectors.proxmox.tasks import TaskIndex, parse_tasks
from inventory.cause import Cause, CauseKind, describe
from inventory.errors import SourceError
from inventory.reconcile import ReconcileResult, reconcile
from inventory.records import Record, Snapshot, record_hash
from inventory.storage.database import Database
from inventory.storage.models import Change, HostRow, WorkloadRow
from inventory.storage.store import SqlStore

POLL = 0.2  # seconds between polls: a change shows within about this long


def lab() -> FakeCluster:
    """Three nodes; VMs with a running agent (addresses), a container, a stopped VM, a pool."""
    cluster = FakeCluster(
        name="lab",
        nodes=[FakeNode("pve1", "10.0.0.1"), FakeNode("pve2", "10.0.0.2"), FakeNode("pve3", "10.0.0.3")],
        pools={"web": "web servers"},
    )
    for vmid, node, kind in ((100, "pve1", "qemu"), (101, "pve1", "qemu"), (102, "pve2", "qemu"), (103, "pve2", "lxc")):
        cluster.guests.append(
            FakeGuest(vmid, kind, f"guest-{vmid}", node, macs=[mac_for(vmid)], addresses=[f"10.1.0.{vmid - 90}/24"])  # type: ignore[arg-type]
        )
    cluster.guests.append(FakeGuest(104, "qemu", "guest-104", "pve3", status="stopped", macs=[mac_for(104)]))
    cluster.guest(100).pool = "web"
    return cluster


@pytest.fixture
def pve() -> Iterator[FakeProxmox]:
    with MutableFakeProxmox(lab()) as fake:
        yield fake


def connector(pve: FakeProxmox, **settings: Any) -> ProxmoxConnector:
    return ProxmoxConnector(ProxmoxConfig(**pve.source(**{"poll_interval": POLL, **settings})))


class Watching:
    """watch() on a thread, as the core runs it: each snapshot handed over a queue, an error kept."""

    def __init__(self, source: ProxmoxConnector) -> None:
        self.stop = threading.Event()
        self.snapshots: queue.Queue[Snapshot] = queue.Queue()
        self.error: BaseException | None = None
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source,), daemon=True)
        self._thread.start()

    def _run(self, source: ProxmoxConnector) -> None:
        try:
            for snapshot in source.watch(self.stop):
                self.snapshots.put(snapshot)
        except BaseException as exc:  # handed to the test
            self.error = exc
        finally:
            self.ended.set()

    def next(self, timeout: float = 5.0) -> Snapshot:
        return self.snapshots.get(timeout=timeout)

    def until(self, guest: str, *, status: str | None = None, node: str | None = None, gone: bool = False) -> Snapshot:
        """The delta that shows this change of a guest ("lab/101"), skipping any before it.

        The two reads of a poll are not one moment: a change made between them can be seen first by its
        task alone (the guest read again, its row not changed yet), then by its row at the next poll.
        """
        deadline = time.monotonic() + 5
        while True:
            delta = self.next(timeout=max(0.01, deadline - time.monotonic()))
            for workload in delta.workloads:
                if workload.external_id == guest and (status is None or workload.status == status):
                    if node is None or workload.attributes.get("node") == node:
                        return delta
            if gone and any(key[2] == guest for key in delta.deleted):
                return delta

    def quiet_for(self, seconds: float) -> bool:
        try:
            self.snapshots.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def end(self) -> float:
        """Set stop; the seconds watch() took to return."""
        started = time.monotonic()
        self.stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()
        return time.monotonic() - started


@pytest.fixture
def watching(pve: FakeProxmox) -> Iterator[Watching]:
    watch = Watching(connector(pve))
    yield watch
    watch.end()


def records(snapshot: Snapshot) -> list[Record]:
    return [*snapshot.hosts, *snapshot.workloads, *snapshot.services]


def hashes(snapshot: Snapshot) -> dict[tuple[str, str, str], str]:
    return {(type(r).__name__, r.kind, r.external_id): record_hash(r) for r in records(snapshot)}


def write(db: Database, snapshot: Snapshot) -> ReconcileResult:
    with db.write_session() as session:
        store = SqlStore(session)
        source_id = store.source_id("pve", "proxmox", snapshot.identity)
        return reconcile(snapshot, store, source_id=source_id, run_id=store.start_run(source_id))


def assert_told_by(snapshot: Snapshot, key: tuple[str, str, str], task: FakeTask) -> None:
    cause = snapshot.causes[key]
    assert (cause.kind, cause.actor, cause.action, cause.ref, cause.inferred) == (
        CauseKind.PROXMOX_TASK,
        task.user,
        task.type,
        task.upid,
        False,
    )
    assert cause.at is not None and int(cause.at.timestamp()) == task.endtime


def test_the_first_poll_is_what_collect_builds_and_reads_its_scopes(pve: FakeProxmox, watching: Watching) -> None:
    first = watching.next()
    collected = connector(pve).collect()
    assert not first.delta and first.scopes == collected.scopes and first.complete
    assert hashes(first) == hashes(collected) and len(hashes(first)) == 3 + 5 + 5 + 1


def test_each_change_is_yielded_within_a_poll_with_the_task_that_made_it(pve: FakeProxmox, watching: Watching) -> None:
    watching.next()
    cluster = pve.cluster

    started = time.monotonic()
    task = cluster.stop_guest(101, user="alice@pve")
    delta = watching.until("lab/101", status="stopped")
    assert time.monotonic() - started < 3 * POLL + 1
    assert delta.delta and not delta.scopes and not delta.deleted
    assert [(w.external_id, w.status) for w in delta.workloads] == [("lab/101", "stopped")], (
        delta.hosts,
        delta.services,
        delta.deleted,
        delta.errors,
    )
    assert [h.external_id for h in delta.hosts] == ["lab/101"]
    assert_told_by(delta, ("workload", "qemu", "lab/101"), task)
    assert_told_by(delta, ("host", "vm", "lab/101"), task)

    task = cluster.start_guest(101, user="bob@pve")
    delta = watching.until("lab/101", status="running")
    assert delta.workloads[0].status == "running" and delta.hosts[0].addresses == ("10.1.0.11",)
    assert_told_by(delta, ("workload", "qemu", "lab/101"), task)

    task = cluster.migrate_guest(102, "pve3")
    delta = watching.until("lab/102", node="pve3")
    assert [w.attributes["node"] for w in delta.workloads] == ["pve3"] and not delta.hosts  # the machine is the same
    assert delta.workloads[0].host is not None and delta.workloads[0].host.external_id == "lab/pve3"
    assert_told_by(delta, ("workload", "qemu", "lab/102"), task)
    assert task.node == "pve2" and task.upid.startswith("UPID:pve2:") and ":qmigrate:102:root@pam:" in task.upid

    task = cluster.create_guest(FakeGuest(110, "lxc", "new-ct", "pve1", pool="web", macs=[mac_for(110)]))
    delta = created = watching.until("lab/110")
    assert {(type(r).__name__, r.external_id) for r in records(delta)} == {
        ("Workload", "lab/110"),
        ("Host", "lab/110"),
        ("Service", "lab/web"),  # the pool gained a member
    }
    assert_told_by(delta, ("workload", "lxc", "lab/110"), task)
    assert ("service", "pool", "lab/web") not in delta.causes  # no task names a pool

    cluster.stop_guest(103)
    watching.until("lab/103", status="stopped")
    task = cluster.destroy_guest(103, user="carol@pve")
    delta = watching.until("lab/103", gone=True)
    assert delta.deleted == {("workload", "lxc", "lab/103"), ("host", "lxc", "lab/103")}
    assert not delta.workloads and not delta.hosts
    assert_told_by(delta, ("workload", "lxc", "lab/103"), task)

    # Built as collect() builds them: a full collection now says of each guest what its last delta said.
    collected = connector(pve).collect()
    full, yielded = hashes(collected), hashes(created)
    assert yielded == {key: full[key] for key in yielded}
    assert ("Workload", "lxc", "lab/103") not in full


def test_an_api_token_s_task_names_the_token(pve: FakeProxmox, watching: Watching) -> None:
    watching.next()
    client = open_client(ProxmoxConfig(**pve.source()))
    try:
        upid = client.post("stop", "nodes/pve2/qemu/102/status/stop")
    finally:
        client.close()
    delta = watching.until("lab/102", status="stopped")
    cause = delta.causes[("workload", "qemu", "lab/102")]
    assert (cause.actor, cause.action, cause.ref) == ("inventory@pve!ro", "qmstop", upid)
    assert describe(cause.to_json()) == "inventory@pve!ro qmstop"


def test_a_task_of_several_guests_is_matched_by_time_and_says_so(pve: FakeProxmox, watching: Watching) -> None:
    watching.next()
    bulk = pve.cluster.task("pve2", "stopall", user="root@pam", running=True)  # the node's "Bulk Stop": no vmid
    pve.cluster.task("pve1", "stopall")  # another node's: not these guests'
    pve.cluster.guest(102).status = "stopped"
    pve.cluster.guest(103).status = "stopped"
    bulk.finish()
    causes: dict[str, Cause] = {}
    while len(causes) < 2:  # one poll may see one guest stopped, the next the other
        delta = watching.next()
        causes |= {key[2]: cause for key, cause in delta.causes.items() if key[0] == "workload"}
    assert set(causes) == {"lab/102", "lab/103"}
    assert all(c.ref == bulk.upid and c.inferred for c in causes.values())
    assert describe(causes["lab/102"].to_json()) == "root@pam stopall (inferred)"


def test_an_unchanged_cluster_yields_nothing_and_reads_no_details_again(db: Database, pve: FakeProxmox) -> None:
    source = connector(pve)
    assert write(db, source.collect()).created > 0  # the core's full sync, then the watch
    watching = Watching(source)
    try:
        first = watching.next()
        result = write(db, first)
        assert (result.created, result.updated, result.removed, result.revived) == (0, 0, 0, 0)
        pve.reset_calls()
        # Counters move at every poll (uptime, cpu, netin...): none of them is a change.
        assert watching.quiet_for(6 * POLL)
        assert set(pve.calls) == {"GET /cluster/resources", "GET /cluster/tasks"}
        assert pve.calls["GET /cluster/resources"] >= 4

        pve.reset_calls()
        pve.recording = True
        task = pve.cluster.stop_guest(100, user="alice@pve")
        delta = watching.until("lab/100", status="stopped")
        details = [path for path in pve.requested if path.startswith("/nodes/")]
        # The one guest that changed (twice at most: a poll may see its task before its row).
        assert details and all(path.startswith("/nodes/pve1/qemu/100/") for path in details), details
        assert details.count("/nodes/pve1/qemu/100/config") <= 2
        result = write(db, delta)
        assert (result.created, result.updated, result.removed) == (0, 2, 0)  # its workload and its host
        with db.session() as session:
            rows = session.execute(select(Change).where(Change.external_id == "lab/100")).scalars().all()
        assert {(c.object_type, c.action) for c in rows[-2:]} == {("workload", "updated"), ("host", "updated")}
        assert all(c.cause and c.cause["ref"] == task.upid and c.cause["actor"] == "alice@pve" for c in rows[-2:])
    finally:
        watching.end()


def test_a_node_going_offline_keeps_its_guests(db: Database, pve: FakeProxmox) -> None:
    source = connector(pve)
    write(db, source.collect())
    watching = Watching(source)
    try:
        write(db, watching.next())
        pve.cluster.power_off("pve2")
        delta = watching.next()
        assert not delta.deleted and {h.external_id: h.status for h in delta.hosts}["lab/pve2"] == "offline"
        assert {w.external_id: w.status for w in delta.workloads} == {"lab/102": "unknown", "lab/103": "unknown"}
        assert all("attributes.disks" in w.unread for w in delta.workloads)  # only its config says: kept
        result = write(db, delta)
        assert result.removed == 0
        with db.session() as session:
            guests = {w.external_id: w for w in session.execute(select(WorkloadRow)).scalars()}
            machines = {
                h.external_id: h for h in session.execute(select(HostRow).where(HostRow.kind == "vm")).scalars()
            }
        assert guests["lab/102"].removed_at is None and guests["lab/102"].status == "unknown"
        assert guests["lab/102"].attributes["disks"]  # as last read
        assert machines["lab/102"].mac_addresses == [mac_for(102).lower()]

        pve.cluster.power_on("pve2")
        delta = watching.next()
        assert {w.external_id: w.status for w in delta.workloads} == {"lab/102": "running", "lab/103": "running"}
        assert not any(w.unread for w in delta.workloads)
    finally:
        watching.end()


def test_stop_ends_the_watch_within_a_second(pve: FakeProxmox) -> None:
    watching = Watching(connector(pve, poll_interval=30))
    watching.next()
    time.sleep(0.3)  # waiting for its next poll, 30 s away
    assert watching.end() < 1.0 and watching.error is None

    pve.faults.fail("^/cluster/resources$", 500, "Internal Server Error")
    failing = Watching(connector(pve, poll_interval=30))
    time.sleep(0.5)  # its first poll failed: backing off until the next tick
    assert failing.end() < 1.0 and failing.error is None


def test_a_failed_poll_is_tried_again_and_rejected_credentials_end_the_watch(pve: FakeProxmox) -> None:
    watching = Watching(connector(pve))
    try:
        watching.next()
        pve.faults.fail("^/cluster/resources$", 500, "Internal Server Error", times=6)  # two polls (with retries)
        pve.cluster.stop_guest(101)
        delta = watching.next()
        assert [w.external_id for w in delta.workloads] == ["lab/101"], (
            delta.hosts,
            delta.services,
            delta.deleted,
            delta.errors,
        )

        pve.token_secret = "revoked"  # every call is now refused: logged in again once, then the end
        assert watching.ended.wait(10)
        assert isinstance(watching.error, SourceError)
        assert "rejected" in str(watching.error) and "revoked" not in str(watching.error)
    finally:
        watching.end()


def test_guests_hidden_by_a_lost_privilege_end_the_watch_and_remove_nothing(pve: FakeProxmox) -> None:
    watching = Watching(connector(pve))
    try:
        watching.next()
        pve.faults.permissions = "nodes-only"  # VM.Audit taken away: the list holds no guest
        assert watching.ended.wait(10)
        assert isinstance(watching.error, SourceError) and "VM.Audit" in str(watching.error)
        assert watching.snapshots.empty()  # no delta deleting every guest came first
    finally:
        watching.end()


def test_a_guest_whose_agent_was_not_up_yet_is_read_again(pve: FakeProxmox, watching: Watching) -> None:
    watching.next()
    guest = pve.cluster.guest(104)
    guest.agent, guest.addresses = "not-running", ["10.1.0.14/24"]
    pve.cluster.start_guest(104)
    delta = watching.until("lab/104", status="running")
    assert delta.hosts[0].addresses == () and "addresses" in delta.hosts[0].unread  # kept as last known
    guest.agent = "running"  # the agent comes up a little later: no row changes, no task
    delta = watching.next(timeout=10 * POLL + 2)
    assert [h.addresses for h in delta.hosts] == [("10.1.0.14",)] and not delta.workloads


def test_a_full_sync_attributes_the_changes_of_its_interval(pve: FakeProxmox) -> None:
    old = pve.cluster.stop_guest(100, user="alice@pve")
    old.endtime = old.starttime = int(time.time()) - 3600  # long before this sync's interval
    task = pve.cluster.stop_guest(101, user="bob@pve")
    destroyed = pve.cluster.destroy_guest(104, user="carol@pve")
    snapshot = connector(pve, interval=300).collect()
    assert ("workload", "qemu", "lab/100") not in snapshot.causes
    assert_told_by(snapshot, ("workload", "qemu", "lab/101"), task)
    assert_told_by(snapshot, ("host", "vm", "lab/101"), task)
    # Removed by the complete guest scope, with the task that destroyed it.
    assert_told_by(snapshot, ("workload", "qemu", "lab/104"), destroyed)


def test_the_task_list_is_read_as_pve_manager_answers_it(pve: FakeProxmox) -> None:
    pve.cluster.task("pve1", "qmstart", 100, "inventory@pve!ro")
    running = pve.cluster.task("pve2", "vzdump", "", "root@pam", running=True)
    client = open_client(ProxmoxConfig(**pve.source()))
    try:
        answer = client.get_list("cluster tasks", "cluster/tasks")
    finally:
        client.close()
    by_type = {entry["type"]: entry for entry in answer}
    assert by_type["qmstart"]["user"] == "inventory@pve" and by_type["qmstart"]["tokenid"] == "ro"
    assert by_type["qmstart"]["status"] == "OK" and "pid" not in by_type["qmstart"]
    assert "endtime" not in by_type["vzdump"] and by_type["vzdump"]["id"] == ""
    tasks = {task.type: task for task in parse_tasks(answer)}
    assert tasks["qmstart"].actor == "inventory@pve!ro" and tasks["vzdump"].running
    index = TaskIndex(tasks.values())
    cause = index.cause_for(103, {"pve2"})
    assert cause is not None and cause.inferred and cause.ref == running.upid and cause.detail == {"state": "running"}
    assert index.cause_for(104, {"pve3"}) is None  # no task near it: unknown, not a guess


def test_a_task_naming_a_guest_has_it_read_again_once_not_at_every_poll(pve: FakeProxmox, watching: Watching) -> None:
    watching.next()
    pve.reset_calls()
    backup = pve.cluster.task("pve3", "vzdump", 104, "root@pam", running=True)  # a backup: no row changes
    assert watching.quiet_for(6 * POLL)  # read again (its config may have changed), found equal: nothing yielded
    assert pve.calls["GET /nodes/{node}/qemu/{vmid}/config"] == 1
    backup.finish()
    assert watching.quiet_for(3 * POLL)
    assert pve.calls["GET /nodes/{node}/qemu/{vmid}/config"] == 2  # and once more when it ended


def test_a_row_that_changes_polls_after_its_task_is_matched_by_time_and_a_task_explains_one_change(
    pve: FakeProxmox, watching: Watching
) -> None:
    watching.next()
    # Proxmox VE publishes a guest's status seconds after its task ended (pvestatd): the row lags.
    task = pve.cluster.task("pve1", "qmstop", 101, "alice@pve")
    time.sleep(4 * POLL)
    pve.cluster.guest(101).status = "stopped"
    delta = watching.until("lab/101", status="stopped")
    cause = delta.causes[("workload", "qemu", "lab/101")]
    assert (cause.ref, cause.actor, cause.inferred) == (task.upid, "alice@pve", True)

    task = pve.cluster.stop_guest(100, user="bob@pve")
    assert_told_by(watching.until("lab/100", status="stopped"), ("workload", "qemu", "lab/100"), task)
    pve.cluster.guest(100).tags = ["edited"]  # in place, no task: not bob's qmstop again
    delta = watching.until("lab/100")
    assert delta.workloads[0].labels == {"tag/edited": "true"}
    assert ("workload", "qemu", "lab/100") not in delta.causes
