"""Which hosts of different sources are one machine: the rule (uuid, providerID, MAC, hostname + address),
the links stored at each sync, and every view that reads them."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
from lab_support import SyncedLab, lab  # noqa: F401  (the module-scoped demo lab on both engines)
from sqlalchemy import delete, select
from sync_support import write_config

from inventory.config import load_config
from inventory.connector import ConnectorRegistry
from inventory.impact import impact_of
from inventory.machine_links import live_host_facts, relink_machines, stored_machines
from inventory.machines import (
    AmbiguousUuid,
    HostFacts,
    MachineMatch,
    MatchRule,
    link_machines,
    machine_matches,
    machines,
    match_rule,
)
from inventory.queries import ObjectFilter, list_hosts, show_object
from inventory.report import build_report
from inventory.storage.database import Database
from inventory.storage.models import HostRow, MachineLink
from inventory.sync import sync_all
from inventory.timeutil import utcnow


def test_rules_in_order_of_strength() -> None:
    vm = HostFacts(
        1,
        1,
        "k3s-1",
        machine_uuid="4C4C4544-0042",
        mac_addresses=("BC:24:11:00:00:01",),
        addresses=("192.168.1.21/24",),
        provider_id="proxmox://homelab/101",
    )
    assert match_rule(vm, HostFacts(2, 2, "other-name", machine_uuid="4c4c4544-0042")) == MatchRule.MACHINE_UUID
    assert match_rule(vm, HostFacts(3, 2, "x", provider_id="PROXMOX://homelab/101")) == MatchRule.PROVIDER_ID
    assert (
        match_rule(vm, HostFacts(4, 2, "x", machine_uuid="ffff", mac_addresses=("bc:24:11:00:00:01",)))
        == MatchRule.MAC_ADDRESS
    )
    assert match_rule(vm, HostFacts(5, 2, "K3S-1.lan", addresses=("192.168.1.21",))) == MatchRule.HOSTNAME_ADDRESS
    assert match_rule(vm, HostFacts(6, 2, "x", hostname="k3s-1.example.org", addresses=("192.168.1.21",))) == (
        MatchRule.HOSTNAME_ADDRESS
    )
    # uuid wins over a MAC that also matches
    both = HostFacts(7, 2, "y", machine_uuid="4C4C4544-0042", mac_addresses=("bc:24:11:00:00:01",))
    assert match_rule(vm, both) == MatchRule.MACHINE_UUID


def test_hostname_and_address_must_both_agree() -> None:
    vm = HostFacts(1, 1, "web", addresses=("10.0.0.5",))
    assert match_rule(vm, HostFacts(2, 2, "web")) is None  # a name alone: two machines called web are common
    assert match_rule(vm, HostFacts(3, 2, "web", addresses=("10.0.0.6",))) is None
    assert match_rule(vm, HostFacts(4, 2, "db", addresses=("10.0.0.5",))) is None  # an address alone (NAT, reuse)
    assert match_rule(vm, HostFacts(5, 2, "web", addresses=("10.0.0.6", "10.0.0.5/24"))) == MatchRule.HOSTNAME_ADDRESS


def test_no_match_without_evidence_or_within_one_source() -> None:
    vm = HostFacts(1, 1, "k3s-1", machine_uuid="u1")
    assert match_rule(vm, HostFacts(2, 2, "k3s-2", machine_uuid="u2")) is None
    assert match_rule(vm, HostFacts(3, 1, "k3s-1", machine_uuid="u1")) is None  # a source's own hosts stay apart
    assert match_rule(HostFacts(4, 1, ""), HostFacts(5, 2, "")) is None
    # the hostname wins over the name: k3s-1 named "k3s-1" with hostname "db" is machine db
    a = HostFacts(6, 1, "k3s-1", hostname="db.lan", addresses=("10.0.0.1",))
    assert match_rule(a, HostFacts(7, 2, "k3s-1", addresses=("10.0.0.1",))) is None


def test_provider_id_of_a_node_and_of_a_proxmox_guest() -> None:
    """Each connector reads its own hosts' provider ids; the core names no provider scheme."""
    registry = ConnectorRegistry.discover()
    node_id, guest_id = partial(registry.provider_id, "kubernetes"), partial(registry.provider_id, "proxmox")
    assert node_id({"provider_id": "proxmox://HomeLab/101"}) == "proxmox://homelab/101"
    assert guest_id({"cluster": "homelab", "vmid": 101}) == "proxmox://homelab/101"
    assert node_id({"provider_id": "k3s://node-0"}) == "k3s://node-0"
    assert guest_id({"cluster": "homelab"}) is None and node_id({}) is None
    assert registry.provider_id("static", {"provider_id": "AWS:///i-1"}) == "aws:///i-1"  # a machine says its own
    assert registry.provider_id("not-installed", {"cluster": "c", "vmid": 1}) is None
    node = HostFacts(1, 1, "worker-a", provider_id=node_id({"provider_id": "proxmox://homelab/101"}))
    guest = HostFacts(2, 2, "vm-101", provider_id=guest_id({"cluster": "homelab", "vmid": 101}))
    other = HostFacts(3, 2, "vm-102", provider_id=guest_id({"cluster": "homelab", "vmid": 102}))
    assert machine_matches([node, guest, other]) == [MachineMatch(1, 2, MatchRule.PROVIDER_ID)]


def test_a_uuid_shared_within_one_source_matches_nothing_and_is_reported() -> None:
    kind = [HostFacts(i, 1, f"kind-{i}", machine_uuid="ABCD") for i in (1, 2, 3)]  # kind nodes share product_uuid
    docker = HostFacts(4, 2, "laptop", machine_uuid="abcd")
    clone = HostFacts(5, 3, "kind-2", machine_uuid="abcd", mac_addresses=("m5",))
    mac_twin = HostFacts(6, 1, "other", machine_uuid="abcd", mac_addresses=("M5",))
    graph = link_machines([*kind, docker, clone, mac_twin])
    assert graph.ambiguous == [AmbiguousUuid(1, "abcd", (1, 2, 3, 6))]
    # no uuid links at all; the weaker rules still hold
    assert graph.matches == [MachineMatch(5, 6, MatchRule.MAC_ADDRESS)]
    # one host per source with that uuid: a match again
    assert link_machines([kind[0], docker]).matches == [MachineMatch(1, 4, MatchRule.MACHINE_UUID)]


def test_bulk_matches_equal_pairwise_rule() -> None:
    hosts = [
        HostFacts(1, 1, "node-0", machine_uuid="u0"),
        HostFacts(2, 2, "node-0.lan", machine_uuid="U0", addresses=("10.0.0.9",)),
        HostFacts(3, 3, "docker01", mac_addresses=("m1",), addresses=("10.0.0.3",)),
        HostFacts(4, 1, "ct-docker", mac_addresses=("M1",)),
        HostFacts(5, 2, "docker01", addresses=("10.0.0.3",)),
        HostFacts(6, 1, "lonely"),
        HostFacts(7, 1, "node-0", addresses=("10.0.0.9",)),  # same source as host 1, another source than host 2
        HostFacts(8, 3, "p", provider_id="proxmox://c/7"),
        HostFacts(9, 1, "q", provider_id="proxmox://c/7"),
    ]
    pairwise = [
        MachineMatch(a.id, b.id, rule)
        for i, a in enumerate(hosts)
        for b in hosts[i + 1 :]
        if (rule := match_rule(a, b)) is not None
    ]
    assert machine_matches(hosts) == sorted(pairwise, key=lambda m: (m.host_id, m.other_id))
    assert MachineMatch(1, 2, MatchRule.MACHINE_UUID) in pairwise
    assert MachineMatch(2, 7, MatchRule.HOSTNAME_ADDRESS) in pairwise
    grouped = machines(hosts)
    assert [m.host_ids for m in grouped] == [(1, 2, 7), (3, 4, 5), (8, 9)]
    assert [m.matched_by for m in grouped] == [MatchRule.MACHINE_UUID, MatchRule.MAC_ADDRESS, MatchRule.PROVIDER_ID]
    assert [m.id for m in grouped] == [1, 3, 8]


def test_report_counts_a_host_busy_when_the_same_machine_by_mac_runs_workloads(tmp_path: Path, db: Database) -> None:
    (tmp_path / "pve.yaml").write_text(
        "hosts:\n"
        "  - {id: ct1, name: docker-ct, kind: lxc, mac_addresses: ['BC:24:11:AA:00:01']}\n"
        "  - {id: spare, name: spare}\n"
    )
    (tmp_path / "docker.yaml").write_text(
        "hosts: [{id: engine, name: engine-7f3a, kind: docker-engine, mac_addresses: ['bc:24:11:aa:00:01']}]\n"
        "workloads: [{id: c1, name: web, host: engine, status: running}]\n"
    )
    config_path = write_config(
        tmp_path / "inventory.yaml", db.url, {"pve": tmp_path / "pve.yaml", "docker": tmp_path / "docker.yaml"}
    )
    registry = ConnectorRegistry.discover()
    assert all(o.ok for o in sync_all(db, load_config(config_path, registry=registry), registry))
    with db.session() as session:
        report = build_report(session, since=utcnow() - timedelta(days=1))
    assert [h["name"] for h in report["hosts_without_workloads"]] == ["spare"]


# -- the stored links, recomputed at each sync ------------------------------------------------------------------


def _sync(db: Database, tmp_path: Path, files: dict[str, str], only: list[str] | None = None) -> None:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
    sources = {name: tmp_path / f"{name}.yaml" for name in ("pve", "k3s", "docker")}
    config_path = write_config(tmp_path / "inventory.yaml", db.url, sources)
    registry = ConnectorRegistry.discover()
    outcomes = sync_all(db, load_config(config_path, registry=registry), registry, names=only)
    assert all(o.ok for o in outcomes), [o.describe() for o in outcomes]


_PVE = (
    "hosts:\n"
    "  - {id: '101', name: vm-a, kind: vm, machine_uuid: 4C4C4544-00AA, attributes: {cluster: lab, vmid: 101}}\n"
    "  - {id: '102', name: vm-b, kind: vm, attributes: {provider_id: 'proxmox://lab/102'}}\n"
    "  - {id: '110', name: ct-docker, kind: lxc, mac_addresses: ['BC:24:11:AA:00:01']}\n"
    "  - {id: '111', name: web, kind: lxc, addresses: [10.0.0.5]}\n"
    "  - {id: '112', name: spare, kind: lxc, addresses: [10.0.0.6]}\n"
)
_K3S = (
    "hosts:\n"
    "  - {id: n1, name: node-a, kind: node, machine_uuid: 4c4c4544-00aa}\n"
    "  - {id: n2, name: node-b, kind: node, attributes: {provider_id: 'proxmox://lab/102'}}\n"
    "workloads: [{id: p1, name: pod-1, host: n1, status: Running}]\n"
)
_DOCKER = (
    "hosts:\n"
    "  - {id: e1, name: engine-7f3a, kind: docker-engine, mac_addresses: ['bc:24:11:aa:00:01']}\n"
    "  - {id: e2, name: web.lan, kind: docker-engine, addresses: [10.0.0.5]}\n"
    "  - {id: e3, name: spare, kind: docker-engine}\n"  # a name alone: not the pve spare
)


def _links(db: Database) -> dict[tuple[str, str], str]:
    """The stored links by host names, each pair once (the table holds both directions)."""
    with db.session() as session:
        names = dict(session.execute(select(HostRow.id, HostRow.name)).all())
        rows = session.execute(select(MachineLink.host_id, MachineLink.other_id, MachineLink.rule)).all()
    pairs = {(names[h], names[o]): rule for h, o, rule in rows}
    assert all(pairs[(b, a)] == rule for (a, b), rule in pairs.items())  # stored both ways round
    return {(a, b): rule for (a, b), rule in pairs.items() if a < b}


def test_sync_stores_links_by_each_rule_and_relinks_when_a_host_changes_or_goes(tmp_path: Path, db: Database) -> None:
    _sync(db, tmp_path, {"pve": _PVE, "k3s": _K3S, "docker": _DOCKER})
    assert _links(db) == {
        ("node-a", "vm-a"): "machine_uuid",
        ("node-b", "vm-b"): "provider_id",
        ("ct-docker", "engine-7f3a"): "mac_address",
        ("web", "web.lan"): "hostname_address",
    }
    with db.session() as session:
        rows = {row["name"]: row["machine"] for row in list_hosts(session)}
        vm_a = show_object(session, "host", "vm-a")
    assert rows["vm-a"] == rows["node-a"] == min(vm_a["id"], vm_a["same_machine"][0]["id"])
    assert rows["spare"] is None and rows["web"] == rows["web.lan"] != rows["vm-a"]
    assert vm_a["machine"] == rows["vm-a"] and [(m["name"], m["matched_by"]) for m in vm_a["same_machine"]] == [
        ("node-a", "machine_uuid")
    ]

    # Only k3s syncs: node-b is gone, node-a's uuid changed. Links of hosts of other sources follow.
    k3s = "hosts: [{id: n1, name: node-a, kind: node, machine_uuid: ffff-0001}]\n" + _K3S.splitlines()[-1] + "\n"
    _sync(db, tmp_path, {"k3s": k3s}, only=["k3s"])
    assert _links(db) == {("ct-docker", "engine-7f3a"): "mac_address", ("web", "web.lan"): "hostname_address"}
    with db.session() as session:
        assert show_object(session, "host", "vm-a")["same_machine"] == []
        assert show_object(session, "host", "vm-a")["machine"] is None

    # The engine's address changes: hostname alone no longer links it.
    _sync(db, tmp_path, {"docker": _DOCKER.replace("[10.0.0.5]", "[10.0.0.7]")}, only=["docker"])
    assert _links(db) == {("ct-docker", "engine-7f3a"): "mac_address"}


def test_views_read_the_stored_links(tmp_path: Path, db: Database) -> None:
    """hosts show, hosts list, the report's idle hosts and impact all answer from machine_links."""
    _sync(db, tmp_path, {"pve": _PVE, "k3s": _K3S, "docker": _DOCKER})
    with db.session() as session:
        report = build_report(session, since=utcnow() - timedelta(days=1))
        idle = {h["name"] for h in report["hosts_without_workloads"]}
        assert "vm-a" not in idle and "node-a" not in idle  # node-a runs pod-1: the VM it is is busy
        vm_a = session.execute(select(HostRow).where(HostRow.name == "vm-a")).scalar_one()
        reached = {h.name for h in impact_of(session, "host", vm_a.id).hosts}
        assert "node-a" in reached
    with db.write_session() as session:
        session.execute(delete(MachineLink))
    with db.session() as session:
        assert show_object(session, "host", "vm-a")["same_machine"] == []
        assert {row["machine"] for row in list_hosts(session, ObjectFilter())} == {None}
        report = build_report(session, since=utcnow() - timedelta(days=1))
        assert "vm-a" in {h["name"] for h in report["hosts_without_workloads"]}
        assert "node-a" not in {h.name for h in impact_of(session, "host", vm_a.id).hosts}
        relink_machines(session)  # what the next sync does
        assert len(show_object(session, "host", "vm-a")["same_machine"]) == 1


def test_a_uuid_two_hosts_of_one_source_share_links_nothing_and_is_reported(
    tmp_path: Path, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    pve = (
        "hosts:\n"
        "  - {id: '201', name: clone-1, kind: vm, machine_uuid: 11111111-AAAA}\n"
        "  - {id: '202', name: clone-2, kind: vm, machine_uuid: 11111111-aaaa}\n"
    )
    k3s = "hosts: [{id: n1, name: clone-1, kind: node, machine_uuid: 11111111-aaaa}]\n"
    with caplog.at_level(logging.WARNING, logger="inventory.machine_links"):
        _sync(db, tmp_path, {"pve": pve, "k3s": k3s, "docker": "hosts: []\n"})
    warnings = [r.getMessage() for r in caplog.records if r.name == "inventory.machine_links"]
    assert warnings == [
        "source 'pve': machine uuid 11111111-aaaa is shared by 2 hosts (clone-1, clone-2), "
        "so it links none of them to another source"
    ]
    assert _links(db) == {}
    with db.session() as session:
        report = build_report(session, since=utcnow() - timedelta(days=1))
        shown = show_object(session, "host", "pve/vm/201")  # sources are written in the order they finish
    assert report["ambiguous_machine_uuids"] == [
        {"source": "pve", "machine_uuid": "11111111-aaaa", "hosts": ["clone-1", "clone-2"]}
    ]
    assert shown["name"] == "clone-1" and [h["name"] for h in shown["machine_uuid_shared_with"]] == ["clone-2"]

    # One clone is destroyed: the uuid is one host's again, and links it.
    _sync(db, tmp_path, {"pve": pve.splitlines()[0] + "\n" + pve.splitlines()[1] + "\n"}, only=["pve"])
    assert [rule for *_, rule in _machine_rows(db)] == ["machine_uuid", "machine_uuid"]
    with db.session() as session:
        assert build_report(session, since=utcnow() - timedelta(days=1))["ambiguous_machine_uuids"] == []


def _machine_rows(db: Database) -> list[tuple[int, int, str]]:
    with db.session() as session:
        rows = session.execute(select(MachineLink.host_id, MachineLink.other_id, MachineLink.rule))
        return [(host_id, other_id, rule) for host_id, other_id, rule in rows]


# -- the demo lab: Proxmox VMs that are Kubernetes nodes, an LXC running Docker ------------------------------


def test_the_lab_links_vms_to_their_nodes_and_the_lxc_to_its_docker_engine(lab: SyncedLab) -> None:
    with lab.db.session() as session:
        found = {m["seen_as"]: m["matched_by"] for m in stored_machines(session)}
        assert found == {
            "docker01/docker-engine docker01 = pve/lxc docker01": "hostname_address",
            "k3s/node node-0000 = pve/vm node-0000": "machine_uuid",
            "k3s/node node-0001 = pve/vm node-0001": "machine_uuid",
            "k3s/node node-0002 = pve/vm node-0002": "provider_id",
        }
        hosts = {(row["source"], row["name"]): row for row in list_hosts(session)}
        assert hosts[("pve", "node-0002")]["machine"] == hosts[("k3s", "node-0002")]["machine"] is not None
        assert hosts[("pve", "pihole")]["machine"] is None
        graph = link_machines(live_host_facts(session))
        assert graph.ambiguous == []
        guest = session.execute(select(HostRow).where(HostRow.name == "node-0002", HostRow.kind == "vm")).scalar_one()
        reached = impact_of(session, "host", guest.id)
        assert any(h.name == "node-0002" and "provider_id" in h.via for h in reached.hosts)


def test_api_and_web_host_page_show_the_machine_and_a_shared_uuid(tmp_path: Path, db: Database) -> None:
    from fastapi.testclient import TestClient

    from inventory.principals import Principal
    from inventory.server import create_app
    from inventory.server.models import HostDetail

    pve = (
        "hosts:\n"
        "  - {id: '101', name: vm-a, kind: vm, machine_uuid: 4C4C4544-00AA}\n"
        "  - {id: '201', name: clone-1, kind: vm, machine_uuid: 11111111-aaaa}\n"
        "  - {id: '202', name: clone-2, kind: vm, machine_uuid: 11111111-aaaa}\n"
    )
    _sync(db, tmp_path, {"pve": pve, "k3s": _K3S, "docker": "hosts: []\n"})
    tokens = {"t0ken-for-eve": Principal("eve", groups=frozenset({"viewers"}))}
    with TestClient(create_app(db, authenticator=tokens.get, mcp=False)) as client:
        header = {"Authorization": "Bearer t0ken-for-eve"}
        shown = client.get("/api/v1/inventory/hosts/pve/vm/101", headers=header).json()
        HostDetail.model_validate(shown)
        assert shown["machine"] is not None and [m["name"] for m in shown["same_machine"]] == ["node-a"]
        listed = client.get("/api/v1/inventory/hosts", params={"name": "node-a"}, headers=header).json()["items"]
        assert listed[0]["machine"] == shown["machine"]
        assert client.post("/login", data={"token": "t0ken-for-eve"}, follow_redirects=False).status_code == 303
        page = client.get("/hosts/pve/vm/101").text
        assert f"machine {shown['machine']}" in page and "node-a" in page and "by machine_uuid" in page
        clone = client.get("/hosts/pve/vm/201").text
        assert 'id="uuid-shared"' in clone and "clone-2" in clone and "links this host to no other source" in clone
        assert 'id="uuid-shared"' not in page


def test_cli_hosts_list_wide_and_json_carry_the_machine(lab: SyncedLab) -> None:
    import json

    from sync_support import invoke_inventory

    wide = invoke_inventory("-c", str(lab.config_path), "hosts", "list", "--name", "node-0002", "-o", "wide")
    assert wide.exit_code == 0, wide.stderr
    header, *rows = wide.stdout.splitlines()
    assert "MACHINE" in header.split() and len(rows) == 2
    config = str(lab.config_path)
    as_json = invoke_inventory("-c", config, "hosts", "list", "--name", "node-0002", "-o", "json")
    listed = json.loads(as_json.stdout)
    machines_seen = {row["machine"] for row in listed}
    assert len(machines_seen) == 1 and None not in machines_seen
    (machine,) = machines_seen
    assert all(str(machine) in row.split() for row in rows)
