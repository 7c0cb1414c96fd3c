"""Query commands over a synced database: filters, show, changes, and every output format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from inventory.cli import cli

INVENTORY = """
hosts:
  - {id: nas1, name: nas, hostname: nas.lan, addresses: [192.168.1.10],
     labels: {role: storage, app.kubernetes.io/part-of: media}}
  - {id: pve1, name: pve1, kind: server, status: up}
  - {id: pve2, name: pve2, kind: server, status: up}
workloads:
  - {id: plex, name: plex, host: nas1, status: running, labels: {app: plex}}
  - {id: web-1, name: web-1, host: pve1, namespace: prod, status: running}
  - {id: web-2, name: web-2, host: pve1, namespace: prod, status: stopped}
  - {id: dup-a, name: twin, host: pve2}
  - {id: dup-b, name: twin, host: pve2}
services:
  - {id: media, name: media, members: [plex], slo: 99.5}
"""


@pytest.fixture
def synced(tmp_path: Path, migrated_database_url: str) -> Path:
    return sync_static(tmp_path, migrated_database_url, INVENTORY)


def sync_static(tmp_path: Path, database_url: str, inventory: str) -> Path:
    """A config with one static source of ``inventory``, synced; its path."""
    (tmp_path / "lab.yaml").write_text(inventory)
    config = tmp_path / "inventory.yaml"
    config.write_text(
        f"database: {{url: '{database_url}'}}\nsources:\n  - {{type: static, name: lab, path: lab.yaml}}\n"
    )
    for args in (["db", "upgrade"], ["sync", "--once"]):
        result = CliRunner().invoke(cli, ["--config", str(config), *args])
        assert result.exit_code == 0, result.output
    return config


def query(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def names(config: Path, *args: str) -> list[str]:
    result = query(config, *args, "-o", "json")
    assert result.exit_code == 0, result.output
    return sorted(row["name"] for row in json.loads(result.stdout))


def test_hosts_list_table(synced: Path) -> None:
    result = query(synced, "hosts", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "SOURCE", "KIND", "NAME"]
    assert any("nas" in line and "nas.lan" in line and "192.168.1.10" in line for line in lines)
    assert "\x1b[" not in result.stdout  # no colour off a terminal


def test_filters(synced: Path) -> None:
    assert names(synced, "hosts", "list", "--kind", "server") == ["pve1", "pve2"]
    assert names(synced, "hosts", "list", "--label", "role=storage") == ["nas"]
    assert names(synced, "hosts", "list", "--label", "app.kubernetes.io/part-of=media") == ["nas"]
    assert names(synced, "workloads", "list", "--host", "pve1") == ["web-1", "web-2"]
    assert names(synced, "workloads", "list", "--status", "RUNNING") == ["plex", "web-1"]
    assert names(synced, "workloads", "list", "--name", "web-*") == ["web-1", "web-2"]
    assert names(synced, "workloads", "list", "--name", "w?b_1") == []  # _ is literal, not a wildcard
    assert names(synced, "workloads", "list", "--namespace", "prod") == ["web-1", "web-2"]
    assert names(synced, "workloads", "list", "--source", "lab", "--name", "twin") == ["twin", "twin"]
    assert query(synced, "workloads", "list", "--source", "elsewhere").exit_code == 2


def test_json_output_is_the_documented_shape(synced: Path) -> None:
    (row,) = json.loads(query(synced, "workloads", "list", "--name", "plex", "-o", "json").stdout)
    assert set(row) == {
        "id",
        "source",
        "kind",
        "external_id",
        "name",
        "status",
        "namespace",
        "host_id",
        "host",
        "parent_id",
        "labels",
        "attributes",
        "first_seen_at",
        "changed_at",
        "removed_at",
        "details_stale_since",
    }
    assert (row["source"], row["kind"], row["external_id"], row["host"]) == ("lab", "app", "plex", "nas")


def test_csv_and_yaml_output(synced: Path) -> None:
    reader = csv.DictReader(io.StringIO(query(synced, "hosts", "list", "-o", "csv").stdout))
    rows = {r["name"]: r for r in reader}
    assert json.loads(rows["nas"]["labels"])["role"] == "storage"
    documents = yaml.safe_load(query(synced, "services", "list", "-o", "yaml").stdout)
    assert documents[0]["name"] == "media" and documents[0]["members"] == 1
    assert documents[0]["attributes"] == {"slo": 99.5}


def test_show_with_links_and_changes(synced: Path) -> None:
    doc = json.loads(query(synced, "hosts", "show", "pve1", "-o", "json").stdout)
    assert sorted(w["name"] for w in doc["workloads"]) == ["web-1", "web-2"]
    assert doc["changes"][0]["action"] == "created"
    workload = yaml.safe_load(query(synced, "workloads", "show", "plex").stdout)
    assert workload["host"]["name"] == "nas"
    assert [s["name"] for s in workload["services"]] == ["media"]


def test_show_ambiguous_name_lists_candidates_and_id_disambiguates(synced: Path) -> None:
    result = query(synced, "workloads", "show", "twin")
    assert result.exit_code == 2
    assert "2 workloads are named 'twin'" in result.stderr and "kind app, external id dup-a" in result.stderr
    by_path = json.loads(query(synced, "workloads", "show", "lab/app/dup-b", "-o", "json").stdout)
    assert by_path["external_id"] == "dup-b"
    by_id = json.loads(query(synced, "workloads", "show", str(by_path["id"]), "-o", "json").stdout)
    assert by_id["external_id"] == "dup-b"
    missing = query(synced, "hosts", "show", "nope")
    assert missing.exit_code == 1 and "no host named 'nope'" in missing.stderr


def test_changes_and_removed_objects(synced: Path) -> None:
    lab = synced.parent / "lab.yaml"
    lab.write_text(
        INVENTORY.replace("  - {id: web-2, name: web-2, host: pve1, namespace: prod, status: stopped}\n", "").replace(
            "status: running, labels: {app: plex}", "status: stopped, labels: {app: plex}"
        )
    )
    assert query(synced, "sync", "--once").exit_code == 0
    rows = json.loads(query(synced, "changes", "--since", "1h", "--action", "removed", "-o", "json").stdout)
    assert [(r["object_type"], r["name"]) for r in rows] == [("workload", "web-2")]
    updated = json.loads(query(synced, "changes", "--type", "workload", "--action", "updated", "-o", "json").stdout)
    assert updated[0]["diff"] == {"status": ["running", "stopped"]}
    assert names(synced, "workloads", "list", "--name", "web-*") == ["web-1"]
    assert names(synced, "workloads", "list", "--name", "web-*", "--include-removed") == ["web-1", "web-2"]
    table = query(synced, "changes", "--since", "1h").stdout
    assert "removed" in table and "web-2" in table
    assert query(synced, "changes", "--since", "2001-01-01").exit_code == 0
    bad = query(synced, "changes", "--since", "yesterday-ish")
    assert bad.exit_code == 2 and "not a duration or ISO time" in bad.stderr


def test_sources_listing(synced: Path) -> None:
    (row,) = json.loads(query(synced, "sources", "-o", "json").stdout)
    assert (row["name"], row["type"], row["hosts"], row["workloads"], row["services"], row["last_status"]) == (
        "lab",
        "static",
        3,
        5,
        1,
        "success",
    )


def test_same_machine_across_sources(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / "a.yaml").write_text(
        "hosts: [{id: vm101, name: k3s-1, kind: vm, machine_uuid: 4C4C4544-0042, mac_addresses: "
        "['BC:24:11:00:00:01']}]\n"
    )
    (tmp_path / "b.yaml").write_text(
        "hosts:\n"
        "  - {id: node-uid, name: k3s-1.lan, kind: node, machine_uuid: 4c4c4544-0042}\n"
        "  - {id: engine, name: docker-on-vm, kind: docker-engine, mac_addresses: ['bc:24:11:00:00:01']}\n"
        "  - {id: other, name: k3s-2, kind: node}\n"
    )
    config = tmp_path / "inventory.yaml"
    config.write_text(
        f"database: {{url: '{sqlite_url}'}}\nsources:\n  - {{type: static, name: pve, path: a.yaml}}\n  - {{type: "
        "static, name: k8s, path: b.yaml}\n"
    )
    assert query(config, "sync", "--once").exit_code == 0
    doc = json.loads(query(config, "hosts", "show", "pve/vm/vm101", "-o", "json").stdout)
    assert [(m["name"], m["matched_by"]) for m in doc["same_machine"]] == [
        ("k3s-1.lan", "machine_uuid"),
        ("docker-on-vm", "mac_address"),
    ]
