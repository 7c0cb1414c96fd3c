"""Hostile data: NUL characters and over-long strings never fail a source, on PostgreSQL as on SQLite.

They are cleaned in one place (inventory.sanitize, on reconcile's way in), with a warning naming the object.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from connectors.proxmox.config import ProxmoxConfig
from connectors.proxmox.connector import ProxmoxConnector
from connectors.proxmox.fake.model import FakeCluster, FakeGuest, FakeNode
from connectors.proxmox.fake.server import FakeProxmox
from inventory.reconcile import reconcile
from inventory.records import Host, Ref, Service, Snapshot, Workload
from inventory.sanitize import fit
from inventory.storage.database import Database
from inventory.storage.memory import MemoryStore
from inventory.storage.models import Change, HostRow, Source, WorkloadRow
from inventory.sync import sync_source

LONG_CLUSTER = "c" * 600


@pytest.fixture
def pve() -> Iterator[FakeProxmox]:
    cluster = FakeCluster(LONG_CLUSTER, nodes=[FakeNode("pve1", "10.0.0.1")])
    cluster.guests = [
        FakeGuest(100, "qemu", "web\x00evil", "pve1", tags=["a\x00b"], description="line\x00two", agent="disabled"),
        FakeGuest(101, "lxc", "n" * 700, "pve1"),
    ]
    with FakeProxmox(cluster) as fake:
        yield fake


def test_nul_characters_and_over_long_strings_do_not_fail_the_source(db: Database, pve: FakeProxmox) -> None:
    config = ProxmoxConfig(
        name="pve", url=pve.url, token_id=pve.token_id, token_secret=SecretStr(pve.token_secret), ca_file=pve.ca_file
    )
    connector = ProxmoxConnector(config)

    outcome = sync_source(db, connector)

    assert outcome.ok, outcome.error
    assert [w for w in outcome.warnings if "'" + LONG_CLUSTER[:40] in w and "cut" in w]
    with db.session() as session:
        workloads = {w.attributes["vmid"]: w for w in session.scalars(select(WorkloadRow))}
        names = session.scalars(select(Change.name)).all()
        identity = session.scalars(select(Source.identity)).one()
        hosts = session.scalars(select(HostRow)).all()
    assert workloads[100].name == "webevil" and workloads[100].attributes["description"] == "linetwo"
    assert workloads[100].labels == {"tag/ab": "true"}
    assert len(workloads[101].name) == 500 and len(workloads[101].external_id) <= 500
    assert workloads[101].host_id is not None  # the link to the cut node id still resolves
    assert all(len(n) <= 500 and "\x00" not in n for n in names)
    assert identity is not None and len(identity) == 500
    assert {h.backing_workload_id for h in hosts if h.kind != "node"} == {workloads[100].id, workloads[101].id}

    again = sync_source(db, connector)

    assert again.ok and again.result is not None and again.result.changed == 0, again.error


def test_a_cut_id_keeps_a_digest_so_two_long_ids_stay_two() -> None:
    first, second = fit("x" * 600 + "1", 500), fit("x" * 600 + "2", 500)

    assert len(first) == len(second) == 500 and first != second
    assert fit("short\x00", 500) == "short"


def test_links_and_members_to_a_cut_id_resolve_in_memory() -> None:
    long_id = "node/" + "n" * 600
    store = MemoryStore()
    snapshot = Snapshot(
        hosts=[Host("node", long_id, "n")],
        workloads=[Workload("pod", "p\x00", "p", host=Ref("node", long_id))],
        services=[Service("svc", "s", "s", members=(Ref("pod", "p\x00"),))],
    )

    result = reconcile(snapshot, store, source_id=1, run_id=1)

    assert result.created == 3 and result.unresolved_links == 0 and len(result.warnings) == 3
    (pod,) = store.objects["workload"].values()
    assert pod.external_id == "p" and pod.links["host"] is not None
    assert store.members == {1: [1]}
