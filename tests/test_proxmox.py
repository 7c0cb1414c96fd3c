"""The Proxmox VE connector, through the real proxmoxer, against a loopback HTTPS fake of the API.

The fake (connectors/proxmox/fake/server.py) checks token and ticket auth and
serves the API's real field names; tests mutate its cluster between polls.
End-to-end tests go through ``sync_source`` into SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from connector_contract import ConnectorContract, SourceObject
from pydantic import ValidationError
from sqlalchemy import select

from connectors.proxmox.api import SILENT_AFTER_TIMEOUTS, ApiCallFailed, open_client
from connectors.proxmox.config import ProxmoxConfig
from connectors.proxmox.connector import ProxmoxConnector
from connectors.proxmox.fake.model import FakeCluster, FakeGuest, FakeNode, mac_for
from connectors.proxmox.fake.server import FakeProxmox, build_cluster, free_port
from inventory.config import build_config
from inventory.connector import ConnectorRegistry
from inventory.errors import SourceError
from inventory.records import Snapshot
from inventory.storage.database import Database
from inventory.storage.models import Change, HostRow, ServiceMember, ServiceRow, SyncRun, WorkloadRow
from inventory.sync import sync_all, sync_source

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def small_cluster(name: str | None = "lab") -> FakeCluster:
    """Two nodes; a VM with a running agent, one with the agent off, an LXC, a template, a pool."""
    cluster = FakeCluster(
        name=name, nodes=[FakeNode("pve1", "10.0.0.1"), FakeNode("pve2", "10.0.0.2")], pools={"prod": "production"}
    )
    cluster.guests = [
        FakeGuest(100, "qemu", "web", "pve1", tags=["prod", "web"], pool="prod", hastate="started", macs=[mac_for(100)],
                  addresses=["192.168.1.100/24", "fe80::1/64"], smbios_uuid="6F2C1A6E-3B7D-4C55-9E0A-0B1C2D3E4F50",
                  description="front end"),
        FakeGuest(101, "qemu", "db", "pve2", agent="not-running", pool="prod", macs=[mac_for(101)],
                  addresses=["192.168.1.101/24"]),
        FakeGuest(200, "lxc", "cache", "pve2", tags=["prod"], macs=[mac_for(200)], addresses=["192.168.1.200/24"]),
        FakeGuest(9000, "qemu", "debian-tmpl", "pve1", status="stopped", template=True, macs=[mac_for(9000)]),
    ]  # fmt: skip
    return cluster


@pytest.fixture
def pve() -> Iterator[FakeProxmox]:
    with FakeProxmox(small_cluster()) as fake:
        yield fake


# For tests whose point is the connector, not the engine: PostgreSQL setup costs seconds a test here.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def connector_for(fake: FakeProxmox, name: str = "pve", **overrides: Any) -> ProxmoxConnector:
    settings: dict[str, Any] = {
        "name": name, "url": fake.url, "token_id": fake.token_id, "token_secret": fake.token_secret,
        "ca_file": fake.ca_file, "timeout": 5, "retries": 1,
    }  # fmt: skip
    settings.update(overrides)
    return ProxmoxConnector(ProxmoxConfig(**settings))


def by_key(snapshot: Snapshot) -> dict[tuple[str, str], Any]:
    """Workloads and services by (kind, external_id); hosts too, their kind prefixed "host:" (a "lxc" is both)."""
    records: dict[tuple[str, str], Any] = {(w.kind, w.external_id): w for w in snapshot.workloads}
    records.update({(s.kind, s.external_id): s for s in snapshot.services})
    records.update({(f"host:{h.kind}", h.external_id): h for h in snapshot.hosts})
    return records


def live_rows(db: Database, model: Any) -> dict[tuple[str, str], Any]:
    with db.session() as session:
        rows = session.scalars(select(model).where(model.removed_at.is_(None))).all()
        return {(r.kind, r.external_id): r for r in rows}


# -- what lands -----------------------------------------------------------------------------------


def test_nodes_vms_lxcs_templates_and_pools_land_with_links_and_addresses(pve: FakeProxmox) -> None:
    snapshot = connector_for(pve).collect()

    assert snapshot.complete, snapshot.errors
    assert snapshot.identity == "lab"
    records = by_key(snapshot)
    node = records[("host:node", "lab/pve1")]
    assert node.status == "online" and node.addresses == ("10.0.0.1",)
    assert node.attributes["pve_version"] == "8.2.4" and node.attributes["cpus"] == 32

    web = records[("qemu", "lab/100")]
    assert web.name == "web" and web.status == "running" and str(web.host) == "node:lab/pve1"
    assert web.attributes["tags"] == ["prod", "web"] and web.labels == {"tag/prod": "true", "tag/web": "true"}
    assert web.attributes["pool"] == "prod" and web.attributes["ha_state"] == "started"
    assert web.attributes["description"] == "front end" and web.attributes["template"] is False
    assert web.attributes["disks"][0]["key"] == "scsi0" and all(
        d["key"] != "ide2" for d in web.attributes["disks"]
    )  # the cdrom is no disk
    web_host = records[("host:vm", "lab/100")]
    assert str(web_host.backed_by) == "qemu:lab/100"
    assert web_host.machine_uuid == "6f2c1a6e-3b7d-4c55-9e0a-0b1c2d3e4f50"
    assert web_host.mac_addresses == (mac_for(100).lower(),)
    assert web_host.addresses == ("192.168.1.100",)  # loopback and link-local left out

    cache_host = records[("host:lxc", "lab/200")]
    assert cache_host.addresses == ("192.168.1.200",) and cache_host.hostname == "cache"
    assert str(records[("lxc", "lab/200")].host) == "node:lab/pve2"

    template = records[("qemu", "lab/9000")]
    assert template.attributes["template"] is True and template.status == "template"
    # A template has a host record too (hosts list and its MAC and SMBIOS uuid), inert: it never runs.
    template_host = records[("host:vm", "lab/9000")]
    assert template_host.status == "template" and template_host.mac_addresses == (mac_for(9000).lower(),)
    assert template_host.machine_uuid == pve.cluster.guest(9000).smbios_uuid.lower()

    pool = records[("pool", "lab/prod")]
    assert sorted(str(m) for m in pool.members) == ["qemu:lab/100", "qemu:lab/101"]


def test_a_guest_whose_agent_is_not_running_lands_without_addresses(pve: FakeProxmox) -> None:
    snapshot = connector_for(pve).collect()

    assert snapshot.complete, snapshot.errors
    db_host = by_key(snapshot)[("host:vm", "lab/101")]
    assert db_host.addresses == () and db_host.mac_addresses == (mac_for(101).lower(),)


def test_a_vm_without_an_agent_configured_is_not_asked(pve: FakeProxmox) -> None:
    pve.cluster.guest(101).agent = "disabled"

    snapshot = connector_for(pve).collect()

    assert snapshot.complete
    assert pve.calls["GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces"] == 1  # web only


def test_calls_are_few_cluster_wide_lists_once_and_one_config_per_guest(pve: FakeProxmox) -> None:
    connector = connector_for(pve)
    connector.collect()

    assert pve.calls["GET /cluster/resources"] == 1 and pve.calls["GET /cluster/status"] == 1
    assert (
        pve.calls["GET /nodes/{node}/qemu/{vmid}/config"] == 3 and pve.calls["GET /nodes/{node}/lxc/{vmid}/config"] == 1
    )
    assert "GET /pools" not in pve.calls and "GET /nodes/{node}/qemu" not in pve.calls
    assert connector.last_call_count == pve.total_calls


def test_standalone_node_is_identified_by_its_node_name() -> None:
    with FakeProxmox(small_cluster(name=None)) as fake:
        snapshot = connector_for(fake).collect()

    assert snapshot.identity == "pve1"
    assert ("qemu", "pve1/100") in by_key(snapshot)


def test_ticket_auth_with_user_and_password(pve: FakeProxmox) -> None:
    connector = connector_for(pve, token_id=None, token_secret=None, user=pve.user, password=pve.password)

    snapshot = connector.collect()

    assert snapshot.complete and pve.calls["POST /access/ticket"] == 1


def test_a_wrong_password_is_refused_at_login_without_showing_it(pve: FakeProxmox) -> None:
    wrong = "not-the-password-at-all"

    with pytest.raises(SourceError) as caught:
        connector_for(pve, token_id=None, token_secret=None, user=pve.user, password=wrong).collect()

    assert "source 'pve', login: the user/password was rejected" in str(caught.value) and wrong not in str(caught.value)


def test_wrong_token_secret_is_an_authentication_error_that_hides_the_secret(pve: FakeProxmox) -> None:
    wrong = "11111111-2222-3333-4444-555555555555"

    with pytest.raises(SourceError) as caught:
        connector_for(pve, token_secret=wrong).collect()

    assert "401" in str(caught.value) and "rejected" in str(caught.value)
    assert wrong not in str(caught.value) and pve.token_secret not in str(caught.value)


# -- identity -------------------------------------------------------------------------------------


def test_duplicate_names_across_nodes_stay_two_objects(pve: FakeProxmox) -> None:
    pve.cluster.guests.append(FakeGuest(102, "qemu", "web", "pve2", macs=[mac_for(102)]))

    snapshot = connector_for(pve).collect()

    webs = [w for w in snapshot.workloads if w.name == "web"]
    assert sorted(w.external_id for w in webs) == ["lab/100", "lab/102"]


def test_rename_and_migration_keep_identity(db: Database, pve: FakeProxmox) -> None:
    connector = connector_for(pve)
    assert sync_source(db, connector).ok
    before = live_rows(db, WorkloadRow)[("qemu", "lab/100")]
    node_ids = {k[1]: r.id for k, r in live_rows(db, HostRow).items() if k[0] == "node"}

    guest = pve.cluster.guest(100)
    guest.name, guest.node = "web-renamed", "pve2"
    outcome = sync_source(db, connector)

    assert outcome.ok and outcome.result is not None
    assert outcome.result.created == 0 and outcome.result.removed == 0
    after = live_rows(db, WorkloadRow)[("qemu", "lab/100")]
    assert after.id == before.id and after.name == "web-renamed"
    assert after.host_id == node_ids["lab/pve2"] != before.host_id
    assert live_rows(db, HostRow)[("vm", "lab/100")].name == "web-renamed"


@sqlite_only
def test_an_unchanged_cluster_writes_nothing_on_the_second_poll(db: Database, pve: FakeProxmox) -> None:
    connector = connector_for(pve)
    sync_source(db, connector)

    outcome = sync_source(db, connector)

    assert outcome.result is not None and outcome.result.changed == 0
    assert outcome.result.unchanged == outcome.objects


def test_links_pools_and_addresses_are_queryable_after_sync(db: Database, pve: FakeProxmox) -> None:
    assert sync_source(db, connector_for(pve)).ok

    hosts, workloads = live_rows(db, HostRow), live_rows(db, WorkloadRow)
    assert hosts[("vm", "lab/100")].backing_workload_id == workloads[("qemu", "lab/100")].id
    assert hosts[("vm", "lab/100")].addresses == ["192.168.1.100"]
    with db.session() as session:
        pool = session.scalars(select(ServiceRow).where(ServiceRow.external_id == "lab/prod")).one()
        members = set(session.scalars(select(ServiceMember.workload_id).where(ServiceMember.service_id == pool.id)))
    assert members == {workloads[("qemu", "lab/100")].id, workloads[("qemu", "lab/101")].id}


@sqlite_only
def test_two_clusters_side_by_side(db: Database, tmp_path: Any) -> None:
    with FakeProxmox(small_cluster("alpha")) as alpha, FakeProxmox(small_cluster("beta")) as beta:
        secret_file = tmp_path / "beta-secret"
        secret_file.write_text(beta.token_secret + "\n")
        raw = {
            "sources": [
                {
                    "type": "proxmox",
                    "name": "a",
                    "url": alpha.url,
                    "token_id": alpha.token_id,
                    "token_secret": alpha.token_secret,
                    "ca_file": str(alpha.ca_file),
                },
                {
                    "type": "proxmox",
                    "name": "b",
                    "url": beta.url,
                    "token_id": beta.token_id,
                    "token_secret_file": str(secret_file),
                    "ca_file": str(beta.ca_file),
                },
            ]
        }
        config = build_config(raw, database_url=db.url, registry=ConnectorRegistry.of(ProxmoxConnector))
        outcomes = sync_all(db, config, ConnectorRegistry.of(ProxmoxConnector))

    assert [o.status for o in outcomes] == ["success", "success"]
    workloads = live_rows(db, WorkloadRow)
    assert ("qemu", "alpha/100") in workloads and ("qemu", "beta/100") in workloads


# -- failures never remove ------------------------------------------------------------------------


def test_a_powered_off_node_is_data_and_a_guest_deleted_elsewhere_is_removed(db: Database, pve: FakeProxmox) -> None:
    connector = connector_for(pve)
    assert sync_source(db, connector).ok
    pve.cluster.node("pve2").online = False
    pve.cluster.guests.remove(pve.cluster.guest(100))  # deleted on pve1 meanwhile

    outcome = sync_source(db, connector)

    assert outcome.status == "success" and outcome.ok, outcome.error
    assert [w for w in outcome.warnings if "node pve2" in w and "offline" in w]
    assert outcome.result is not None and outcome.result.removed == 2  # its workload and its host
    hosts, workloads = live_rows(db, HostRow), live_rows(db, WorkloadRow)
    node = hosts[("node", "lab/pve2")]
    assert node.status == "offline" and node.attributes["cpu_model"] == "AMD EPYC 7302P 16-Core Processor"
    assert (workloads[("qemu", "lab/101")].status, workloads[("lxc", "lab/200")].status) == ("unknown", "unknown")
    assert hosts[("vm", "lab/101")].mac_addresses == [mac_for(101).lower()]  # kept as last read
    assert hosts[("lxc", "lab/200")].addresses == ["192.168.1.200"]
    assert workloads[("qemu", "lab/101")].attributes["disks"]  # its config, as last read
    assert ("qemu", "lab/100") not in workloads and ("vm", "lab/100") not in hosts
    with db.session() as session:
        pool_id = session.scalars(select(ServiceRow.id).where(ServiceRow.kind == "pool")).one()
        members = set(session.scalars(select(ServiceMember.workload_id).where(ServiceMember.service_id == pool_id)))
    assert members == {workloads[("qemu", "lab/101")].id}  # the pool agrees with the live workloads
    with db.session() as session:
        runs = session.scalars(select(SyncRun).order_by(SyncRun.id)).all()
    assert runs[-1].status == "success" and "pve2" in (runs[-1].warnings or "")


def test_a_run_with_a_node_off_is_a_success_and_fresh_for_status(tmp_path: Path, pve: FakeProxmox) -> None:
    from click.testing import CliRunner

    from inventory.cli import cli

    pve.cluster.node("pve2").online = False
    config = tmp_path / "inventory.yaml"
    config.write_text(
        f"database: {{url: 'sqlite:///{tmp_path / 'inventory.db'}'}}\n"
        f"sources:\n  - {{type: proxmox, name: pve, url: '{pve.url}', token_id: '{pve.token_id}', "
        f"token_secret: '{pve.token_secret}', ca_file: '{pve.ca_file}'}}\n",
        encoding="utf-8",
    )
    synced = CliRunner().invoke(cli, ["-c", str(config), "sync", "--once"])
    assert synced.exit_code == 0, synced.output
    assert "node pve2: offline" in synced.output and "FAILED" not in synced.output

    status = CliRunner().invoke(cli, ["-c", str(config), "status", "--max-age", "15m"])
    assert status.exit_code == 0, status.output
    assert "STALE" not in status.output


def test_guests_of_a_node_off_at_the_first_sync_are_created_as_the_cluster_lists_them(
    db: Database, pve: FakeProxmox
) -> None:
    pve.cluster.node("pve2").online = False

    outcome = sync_source(db, connector_for(pve))

    assert outcome.ok, outcome.error
    workloads, hosts = live_rows(db, WorkloadRow), live_rows(db, HostRow)
    # The cluster lists only its id, node and type: the vmid stands in for the name until the node is back.
    assert (workloads[("qemu", "lab/101")].status, workloads[("qemu", "lab/101")].name) == ("unknown", "101")
    assert workloads[("lxc", "lab/200")].details_stale_since is not None
    assert hosts[("node", "lab/pve2")].status == "offline"
    # Every guest is a host too (a template an inert one): it is there, its state unknown.
    assert hosts[("vm", "lab/101")].status == "unknown" and hosts[("lxc", "lab/200")].status == "unknown"

    pve.cluster.node("pve2").online = True
    back = sync_source(db, connector_for(pve))
    assert back.ok, back.error
    workloads, hosts = live_rows(db, WorkloadRow), live_rows(db, HostRow)
    assert (workloads[("qemu", "lab/101")].name, hosts[("vm", "lab/101")].name) == ("db", "db")


def test_a_node_that_goes_off_changes_its_guests_status_and_nothing_else(db: Database, pve: FakeProxmox) -> None:
    pve.cluster.guest(200).node = "pve1"
    pve.cluster.guest(9000).node = "pve2"  # a template on the node that goes off
    connector = connector_for(pve)
    assert sync_source(db, connector).ok
    before_hosts, before_workloads = live_rows(db, HostRow), live_rows(db, WorkloadRow)
    pve.cluster.node("pve2").online = False  # and off long enough that the cluster lists its guests bare

    outcome = sync_source(db, connector)

    assert outcome.status == "success", outcome.error
    assert outcome.result is not None and (outcome.result.created, outcome.result.removed) == (0, 0)
    hosts, workloads = live_rows(db, HostRow), live_rows(db, WorkloadRow)
    assert set(hosts) == set(before_hosts) and set(workloads) == set(before_workloads)
    with db.session() as session:
        diffs = [row.diff for row in session.scalars(select(Change).where(Change.action == "updated"))]
    # Only what the cluster says changed: the node is offline, its guests' state unknown.
    assert sorted(key for diff in diffs for key in diff or {}) == ["status"] * 5, (
        diffs
    )  # node, vm 101 as host and workload, the template as host and workload (template -> unknown)
    for key in (("qemu", "lab/101"), ("qemu", "lab/9000")):
        assert workloads[key].name == before_workloads[key].name
        assert workloads[key].attributes == before_workloads[key].attributes
    assert hosts[("vm", "lab/101")].name == "db" and hosts[("vm", "lab/101")].hostname == "db"
    assert hosts[("node", "lab/pve2")].attributes == before_hosts[("node", "lab/pve2")].attributes
    assert workloads[("qemu", "lab/9000")].attributes["template"] is True


def test_a_failed_node_status_read_keeps_the_node_details_without_change_rows(db: Database, pve: FakeProxmox) -> None:
    connector = connector_for(pve, retries=0)
    assert sync_source(db, connector).ok
    before = live_rows(db, HostRow)[("node", "lab/pve1")].attributes
    pve.faults.fail(r"/nodes/pve1/status$", 500, "Internal Server Error")

    hiccup = sync_source(db, connector)
    during = live_rows(db, HostRow)[("node", "lab/pve1")]
    pve.faults.failures.clear()
    recovered = sync_source(db, connector)

    assert hiccup.status == "partial" and "node pve1 status" in (hiccup.error or "")
    assert during.attributes == before and during.details_stale_since is not None
    for key in ("cpu_model", "cpu_sockets", "kernel", "pve_version", "booted_at"):
        assert during.attributes.get(key) is not None, key
    assert live_rows(db, HostRow)[("node", "lab/pve1")].details_stale_since is None
    assert hiccup.result is not None and recovered.result is not None
    assert (hiccup.result.updated, recovered.result.updated) == (0, 0)


def test_a_guest_agent_hiccup_keeps_the_vms_addresses(db: Database, pve: FakeProxmox) -> None:
    connector = connector_for(pve)
    assert sync_source(db, connector).ok
    pve.cluster.guest(100).agent = "not-running"

    outcome = sync_source(db, connector)

    assert outcome.ok and outcome.result is not None and outcome.result.updated == 0, outcome.error
    assert live_rows(db, HostRow)[("vm", "lab/100")].addresses == ["192.168.1.100"]


def test_lxc_addresses_are_every_address_of_each_interface(pve: FakeProxmox) -> None:
    pve.cluster.guest(200).addresses = ["192.168.1.200/24", "10.9.0.200/16", "2001:db8::200/64"]

    snapshot = connector_for(pve).collect()

    assert by_key(snapshot)[("host:lxc", "lab/200")].addresses == ("10.9.0.200", "192.168.1.200", "2001:db8::200")


def test_a_template_keeps_its_macs_and_smbios_uuid(pve: FakeProxmox) -> None:
    template = by_key(connector_for(pve).collect())[("qemu", "lab/9000")]

    assert template.attributes["mac_addresses"] == [mac_for(9000).lower()]
    assert template.attributes["machine_uuid"] == pve.cluster.guest(9000).smbios_uuid.lower()


def test_the_url_may_end_with_the_api_path_and_timeouts_take_durations(pve: FakeProxmox) -> None:
    config = ProxmoxConfig(name="pve", url=f"{pve.url}/api2/json/", token_id="a@pve!b", token_secret="s", timeout="30s")

    assert (config.url, config.timeout) == (pve.url, 30.0)
    assert connector_for(pve, url=f"{pve.url}/api2/json", timeout="5s").collect().complete


def test_throttling_waits_what_retry_after_asks(pve: FakeProxmox) -> None:
    pve.faults.retry_after[429] = 1
    pve.faults.fail(r"/cluster/resources$", 429, "Too Many Requests", times=1)

    started = time.perf_counter()
    snapshot = connector_for(pve, retries=1).collect()

    assert snapshot.complete and pve.calls["GET /cluster/resources"] == 2
    assert time.perf_counter() - started >= 1.0


def test_a_dropped_connection_is_retried(pve: FakeProxmox) -> None:
    pve.faults.fail(r"/cluster/status$", 0, "", times=1)

    snapshot = connector_for(pve, retries=1).collect()

    assert snapshot.complete and pve.calls["GET /cluster/status"] == 2


def test_a_guest_config_that_keeps_failing_makes_the_snapshot_incomplete(pve: FakeProxmox) -> None:
    pve.faults.fail(r"/qemu/101/config$", 500, "Internal Server Error")

    snapshot = connector_for(pve).collect()

    assert not snapshot.complete
    assert any("qemu 101 on pve2 config" in e and "500" in e for e in snapshot.errors)
    assert "attributes.disks" in by_key(snapshot)[("qemu", "lab/101")].unread  # kept as last read
    assert not by_key(snapshot)[("qemu", "lab/100")].unread


def test_an_answer_that_is_not_json_fails_that_guest_only(pve: FakeProxmox) -> None:
    pve.faults.fail(r"/lxc/200/config$", 200, "<html>502 Bad Gateway</html>")

    snapshot = connector_for(pve).collect()

    assert not snapshot.complete and any(
        "lxc 200 on pve2 config: GET /api2/json/nodes/{node}/lxc/{vmid}/config: malformed answer" in e
        for e in snapshot.errors
    )
    assert ("qemu", "lab/100") in by_key(snapshot)


def test_a_transient_error_is_retried(pve: FakeProxmox) -> None:
    pve.faults.fail(r"/cluster/resources$", 595, "Connection timed out", times=1)

    snapshot = connector_for(pve).collect()

    assert snapshot.complete and pve.calls["GET /cluster/resources"] == 2


def test_a_slow_node_beyond_the_timeout_fails_its_guests_only(pve: FakeProxmox) -> None:
    pve.faults.slow_nodes["pve2"] = 1.5

    snapshot = connector_for(pve, timeout=0.5, retries=0).collect()

    assert not snapshot.complete and any("timed out" in e for e in snapshot.errors)
    assert not by_key(snapshot)[("qemu", "lab/100")].unread and by_key(snapshot)[("qemu", "lab/101")].unread


def test_a_hung_node_costs_about_one_timeout_not_one_per_guest_and_call(pve: FakeProxmox) -> None:
    for vmid in range(300, 312):
        pve.cluster.guests.append(FakeGuest(vmid, "qemu", f"extra{vmid}", "pve2", macs=[mac_for(vmid)]))
    pve.faults.slow_nodes["pve2"] = 3.0  # pveproxy reaches pve2, which never answers in time

    started = time.perf_counter()
    snapshot = connector_for(pve, timeout=0.5, retries=2, concurrency=2).collect()
    elapsed = time.perf_counter() - started

    asked = sum(n for call, n in pve.calls.items() if "/nodes/pve2/" in call)
    assert asked <= SILENT_AFTER_TIMEOUTS + 2, pve.calls  # a timed-out call is not asked again; then none is sent
    assert elapsed < 4, elapsed  # before: 3 attempts of 0.5s for each of 15 calls, two at a time (over 10s)
    assert any("not sent: node pve2 stopped answering" in e for e in snapshot.errors), snapshot.errors
    assert not by_key(snapshot)[("qemu", "lab/100")].unread  # pve1 answered as always


def test_hung_guest_agents_say_nothing_of_their_node(pve: FakeProxmox) -> None:
    pve.cluster.guests.extend(FakeGuest(vmid, "qemu", f"agent{vmid}", "pve1", agent="hung") for vmid in range(300, 306))
    client = open_client(connector_for(pve, timeout=0.5).config)
    try:
        for vmid in range(300, 306):  # six agent calls in a row time out: the agents hang, not the node
            with pytest.raises(ApiCallFailed, match="timed out"):
                client.get_dict("agent", f"nodes/pve1/qemu/{vmid}/agent/network-get-interfaces", retry=False)
        config = client.get_dict("config", "nodes/pve1/qemu/100/config")
    finally:
        client.close()
    assert config["name"] == "web"

    snapshot = connector_for(pve, timeout=0.5, concurrency=6).collect()
    assert not [e for e in snapshot.errors if "not sent" in e], snapshot.errors
    records = by_key(snapshot)
    assert all(records[("host:vm", f"lab/{vmid}")].unread == {"addresses"} for vmid in range(300, 306))


def test_an_unreachable_server_raises_a_source_error_naming_source_and_resource() -> None:
    config = ProxmoxConfig(
        name="pve",
        url=f"https://127.0.0.1:{free_port()}",
        token_id="a@pve!b",
        token_secret="s3cr3t-value",
        timeout=2,
        retries=0,
    )

    with pytest.raises(SourceError) as caught:
        ProxmoxConnector(config).collect()

    assert "source 'pve', cluster status: GET /api2/json/cluster/status: cannot connect" in str(caught.value)


# -- permissions ----------------------------------------------------------------------------------


@sqlite_only
def test_a_token_without_any_acl_is_forbidden_and_says_it_lacks_permissions(db: Database, pve: FakeProxmox) -> None:
    connector = connector_for(pve)
    sync_source(db, connector)
    pve.faults.permissions = "none"

    outcome = sync_source(db, connector)

    assert outcome.status == "forbidden"  # nothing readable: not fresh, its rows kept (tests/test_status_tells.py)
    assert "HTTP 403" in (outcome.error or "") and "PVEAuditor" in (outcome.error or "")
    assert len(live_rows(db, WorkloadRow)) == 4


@sqlite_only
def test_a_token_that_sees_nodes_but_no_guests_removes_nothing_and_says_why(db: Database, pve: FakeProxmox) -> None:
    connector = connector_for(pve)
    sync_source(db, connector)
    pve.faults.permissions = "nodes-only"

    outcome = sync_source(db, connector, allow_empty=True)  # even --allow-empty does not remove on a permission problem

    assert outcome.status == "partial" and outcome.result is not None and outcome.result.removed == 0
    assert "lacks VM.Audit" in (outcome.error or "") and "not an empty cluster" in (outcome.error or "")
    assert len(live_rows(db, WorkloadRow)) == 4


@sqlite_only
def test_an_offline_node_seen_by_a_token_blind_to_guests_claims_no_guest_count(db: Database, pve: FakeProxmox) -> None:
    pve.cluster.node("pve2").online = False
    pve.faults.permissions = "nodes-only"

    snapshot = connector_for(pve).collect()

    assert "node pve2: offline" in snapshot.warnings
    assert not any("guests" in w for w in snapshot.warnings if w.startswith("node pve2"))  # not "its 0 guests"


def test_a_really_empty_cluster_is_withheld_unless_allow_empty(db: Database, pve: FakeProxmox) -> None:
    connector = connector_for(pve)
    sync_source(db, connector)
    pve.cluster.guests.clear()

    withheld = sync_source(db, connector)
    assert withheld.status == "partial" and "--allow-empty" in (withheld.error or "")
    assert len(live_rows(db, WorkloadRow)) == 4

    allowed = sync_source(db, connector, allow_empty=True)
    assert allowed.ok and live_rows(db, WorkloadRow) == {}


# -- TLS ------------------------------------------------------------------------------------------


def test_a_certificate_from_an_unknown_ca_is_refused_by_default(pve: FakeProxmox) -> None:
    with pytest.raises(SourceError) as caught:
        connector_for(pve, ca_file=None).collect()

    assert "TLS certificate verification failed" in str(caught.value) and "ca_file" in str(caught.value)


def test_a_pinned_fingerprint_is_accepted_and_a_wrong_one_refused(pve: FakeProxmox) -> None:
    assert connector_for(pve, ca_file=None, fingerprint=pve.fingerprint).collect().complete

    with pytest.raises(SourceError) as caught:
        connector_for(pve, ca_file=None, fingerprint="AB" * 32).collect()
    assert "pinned fingerprint" in str(caught.value)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verification_can_be_turned_off_explicitly(pve: FakeProxmox, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert connector_for(pve, ca_file=None, verify_tls=False).collect().complete
    assert "verification is off" in caplog.text


# -- config and secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"token_id": "a@pve!b"}, "token_id and token_secret go together"),
        ({"user": "a@pve", "password": "pw", "token_id": "a@pve!b", "token_secret": "x"}, "not both"),
        ({}, r"token_id \+ token_secret \(recommended\)"),
        ({"token_id": "no-realm", "token_secret": "x"}, "token_id"),
        ({"token_id": "a@pve!b", "token_secret": "x", "url": "http://pve:8006"}, "https"),
        ({"user": "a@pve", "password": "pw", "fingerprint": "ab" * 32}, "API token only"),
        ({"token_id": "a@pve!b", "token_secret": "x", "fingerprint": "nope"}, "sha256"),
    ],
)
def test_config_mistakes_are_named(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ProxmoxConfig(**{"name": "pve", "url": "https://pve.lan:8006", **settings})


@sqlite_only
def test_secrets_reach_neither_the_snapshot_nor_the_database_nor_the_log(
    db: Database, pve: FakeProxmox, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        sync_source(db, connector_for(pve))
        pve.faults.fail(r"/lxc/200/config$", 500, "Internal Server Error")
        sync_source(db, connector_for(pve, retries=0))

    dumped = repr([live_rows(db, m) for m in (HostRow, WorkloadRow, ServiceRow)])
    with db.session() as session:
        dumped += repr([(r.error, r.status) for r in session.scalars(select(SyncRun))])
    for secret in (pve.token_secret, pve.password):
        assert secret not in dumped and secret not in caplog.text


def test_importing_the_connector_does_not_import_the_sdk() -> None:
    code = (
        "import connectors.proxmox.connector, sys; assert 'proxmoxer' not in sys.modules and 'requests' not in "
        "sys.modules, 'SDK imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)


def test_the_entry_point_names_this_connector() -> None:
    assert ConnectorRegistry.discover().get("proxmox") is ProxmoxConnector


def test_a_scaled_cluster_is_complete_with_every_guest() -> None:
    with FakeProxmox(build_cluster(nodes=4, guests=120)) as fake:
        snapshot = connector_for(fake).collect()

    assert snapshot.complete, snapshot.errors
    assert len(snapshot.workloads) == 120
    assert len({w.external_id for w in snapshot.workloads}) == 120 > len({w.name for w in snapshot.workloads})


# -- the connector contract -----------------------------------------------------------------------


class TestContract(ConnectorContract):
    @pytest.fixture
    def fake(self) -> Iterator[FakeProxmox]:
        with FakeProxmox(small_cluster()) as fake:
            yield fake

    def connector(self, fake: FakeProxmox) -> ProxmoxConnector:
        return connector_for(fake, retries=0)

    def rename(self, fake: FakeProxmox) -> tuple[SourceObject, str]:
        fake.cluster.guest(100).name = "web-renamed"
        return SourceObject("workload", "qemu", "lab/100"), "web-renamed"

    def remove(self, fake: FakeProxmox) -> SourceObject:
        fake.cluster.guests.remove(fake.cluster.guest(200))
        return SourceObject("workload", "lxc", "lab/200")

    def break_one(self, fake: FakeProxmox) -> None:
        # The guest list is one scope: a token that may not see guests leaves it unread.
        fake.faults.permissions = "nodes-only"

    def heal(self, fake: FakeProxmox) -> None:
        fake.faults.failures.clear()
        fake.faults.permissions = "full"

    def remove_beside_a_failed_scope(self, fake: FakeProxmox) -> SourceObject:
        fake.cluster.guests.remove(fake.cluster.guest(200))
        fake.faults.fail(r"/nodes/pve1/status$", 500, "Internal Server Error")
        return SourceObject("workload", "lxc", "lab/200")

    def break_detail(self, fake: FakeProxmox) -> tuple[SourceObject, str]:
        fake.faults.fail(r"/nodes/pve1/status$", 500, "Internal Server Error")
        return SourceObject("host", "node", "lab/pve1"), "attributes.cpu_model"

    def secrets(self, fake: FakeProxmox) -> list[str]:
        return [fake.token_secret]
