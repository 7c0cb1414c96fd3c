"""The one same-machine rule: uuid, then MAC, then short hostname; pure, and the same in show, report and demo."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sync_support import write_config

from inventory.config import load_config
from inventory.connector import ConnectorRegistry
from inventory.machines import HostFacts, MachineMatch, MatchRule, machine_matches, machines, match_rule, same_machine
from inventory.report import build_report
from inventory.storage.database import Database
from inventory.sync import sync_all
from inventory.timeutil import utcnow


def test_rules_in_order_of_strength() -> None:
    vm = HostFacts(1, source_id=1, name="k3s-1", machine_uuid="4C4C4544-0042", mac_addresses=("BC:24:11:00:00:01",))
    assert match_rule(vm, HostFacts(2, 2, "other-name", machine_uuid="4c4c4544-0042")) == MatchRule.MACHINE_UUID
    assert (
        match_rule(vm, HostFacts(3, 2, "x", machine_uuid="ffff", mac_addresses=("bc:24:11:00:00:01",)))
        == MatchRule.MAC_ADDRESS
    )
    assert match_rule(vm, HostFacts(4, 2, "K3S-1.lan")) == MatchRule.HOSTNAME
    assert match_rule(vm, HostFacts(5, 2, "whatever", hostname="k3s-1.example.org")) == MatchRule.HOSTNAME
    # uuid wins over a MAC that also matches
    both = HostFacts(6, 2, "y", machine_uuid="4C4C4544-0042", mac_addresses=("bc:24:11:00:00:01",))
    assert match_rule(vm, both) == MatchRule.MACHINE_UUID


def test_no_match_without_evidence_or_within_one_source() -> None:
    vm = HostFacts(1, 1, "k3s-1", machine_uuid="u1")
    assert match_rule(vm, HostFacts(2, 2, "k3s-2", machine_uuid="u2")) is None
    assert match_rule(vm, HostFacts(3, 1, "k3s-1", machine_uuid="u1")) is None  # a source's own hosts stay apart
    assert match_rule(HostFacts(4, 1, ""), HostFacts(5, 2, "")) is None
    # the hostname wins over the name: k3s-1 named "k3s-1" with hostname "db" is machine db
    assert match_rule(HostFacts(6, 1, "k3s-1", hostname="db.lan"), HostFacts(7, 2, "k3s-1")) is None


def test_same_machine_orders_strongest_first() -> None:
    host = HostFacts(1, 1, "k3s-1", machine_uuid="u1", mac_addresses=("aa",))
    candidates = [
        HostFacts(2, 2, "k3s-1"),
        HostFacts(3, 2, "z", mac_addresses=("AA",)),
        HostFacts(4, 3, "q", machine_uuid="U1"),
        HostFacts(5, 2, "n"),
    ]
    assert [(m.other_id, m.rule) for m in same_machine(host, candidates)] == [
        (4, MatchRule.MACHINE_UUID),
        (3, MatchRule.MAC_ADDRESS),
        (2, MatchRule.HOSTNAME),
    ]


def test_bulk_matches_equal_pairwise_rule() -> None:
    hosts = [
        HostFacts(1, 1, "node-0", machine_uuid="u0"),
        HostFacts(2, 2, "node-0.lan", machine_uuid="U0"),
        HostFacts(3, 3, "docker01", mac_addresses=("m1",)),
        HostFacts(4, 1, "ct-docker", mac_addresses=("M1",)),
        HostFacts(5, 2, "docker01"),
        HostFacts(6, 1, "lonely"),
        HostFacts(7, 1, "node-0"),  # same source as host 1, another source than host 2
    ]
    pairwise = [
        MachineMatch(a.id, b.id, rule)
        for i, a in enumerate(hosts)
        for b in hosts[i + 1 :]
        if (rule := match_rule(a, b)) is not None
    ]
    assert machine_matches(hosts) == sorted(pairwise, key=lambda m: (m.host_id, m.other_id))
    assert MachineMatch(1, 2, MatchRule.MACHINE_UUID) in pairwise and MachineMatch(2, 7, MatchRule.HOSTNAME) in pairwise
    grouped = machines(hosts)
    assert [m.host_ids for m in grouped] == [(1, 2, 7), (3, 4, 5)]
    assert [m.matched_by for m in grouped] == [MatchRule.MACHINE_UUID, MatchRule.MAC_ADDRESS]


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
