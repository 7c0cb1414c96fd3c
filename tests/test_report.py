"""`inventory report`: counts by kind and status, changes in the period, and what looks wrong."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from lab_support import SyncedLab, lab  # noqa: F401 (a fixture)
from sync_support import invoke_inventory, write_config

from inventory.config import load_config
from inventory.connector import ConnectorRegistry
from inventory.report import build_report, classify_status, format_age, to_markdown
from inventory.storage.database import Database, open_database
from inventory.sync import sync_all
from inventory.timeutil import utcnow

LAB = """
hosts:
  - {id: nas, name: nas}
  - {id: pve1, name: pve1, kind: node}
  - {id: spare, name: spare}
workloads:
  - {id: plex, name: plex, host: nas, status: running}
  - {id: db, name: db, host: pve1, kind: vm, status: stopped}
  - {id: web, name: web, host: pve1, kind: container, status: CrashLoopBackOff}
  - {id: job, name: backup, host: nas, status: Succeeded}
services:
  - {id: media, name: media, members: [plex]}
  - {id: shop, name: shop, members: [db, web]}
  - {id: empty, name: empty}
"""


def _synced(tmp_path: Path, db: Database) -> Path:
    (tmp_path / "lab.yaml").write_text(LAB)
    config_path = write_config(tmp_path / "inventory.yaml", db.url, {"lab": tmp_path / "lab.yaml"})
    registry = ConnectorRegistry.discover()
    assert all(o.ok for o in sync_all(db, load_config(config_path, registry=registry), registry))
    return config_path


def test_status_vocabulary() -> None:
    assert [classify_status(s) for s in ("Running", "exited", "CrashLoopBackOff", "Pending", None, "template")] == [
        "running",
        "stopped",
        "failed",
        "other",
        "other",
        "inert",
    ]
    assert [format_age(s) for s in (None, 42, 307, 3 * 3600 + 300, 2 * 86400 + 4 * 3600)] == [
        "never",
        "42s",
        "5m07s",
        "3h05m",
        "2d4h",
    ]


def test_report_sections(tmp_path: Path, db: Database) -> None:
    _synced(tmp_path, db)
    with db.session() as session:
        report = build_report(session, since=utcnow() - timedelta(days=1))
    (lab,) = report["sources"]
    assert (lab["name"], lab["hosts"], lab["workloads"], lab["services"], lab["last_status"]) == (
        "lab",
        3,
        4,
        3,
        "success",
    )
    assert lab["kinds"]["workload"]["vm"] == {"stopped": 1}
    assert lab["kinds"]["host"]["machine"] == {"<none>": 2}
    assert report["changes"] == [
        {"source": "lab", "created": 10, "updated": 0, "removed": 0, "revived": 0, "total": 10}
    ]
    assert [(w["name"], w["state"], w["host"]) for w in report["problem_workloads"]] == [
        ("db", "stopped", "pve1"),
        ("web", "failed", "pve1"),
    ]
    assert [h["name"] for h in report["hosts_without_workloads"]] == ["spare"]
    assert [(s["name"], s["members"]) for s in report["services_without_running_members"]] == [
        ("empty", 0),
        ("shop", 2),
    ]
    # A period that starts after the sync shows no changes.
    with db.session() as session:
        assert build_report(session, since=utcnow() + timedelta(seconds=1))["changes"] == []


def test_markdown_has_every_section(tmp_path: Path, db: Database) -> None:
    _synced(tmp_path, db)
    with db.session() as session:
        text = to_markdown(build_report(session, since=utcnow() - timedelta(hours=1)))
    for title in (
        "## Sources",
        "## Objects by kind and status",
        "## Changes",
        "## Failed and stopped workloads",
        "## Hosts with no workloads",
        "## Services with no running members",
    ):
        assert title in text
    assert "| lab | workload | container | CrashLoopBackOff | 1 |" in text


def test_report_command_outputs(tmp_path: Path, migrated_sqlite_url: str) -> None:
    db = open_database(migrated_sqlite_url, migrate=True)
    config = _synced(tmp_path, db)
    db.dispose()
    as_json = invoke_inventory("-c", str(config), "report", "--since", "2h", "-o", "json")
    assert as_json.exit_code == 0, as_json.stderr
    assert json.loads(as_json.stdout)["hosts_without_workloads"][0]["name"] == "spare"
    table = invoke_inventory("-c", str(config), "report")
    assert table.exit_code == 0, table.stderr
    assert "Failed and stopped workloads: 2" in table.stdout and "CrashLoopBackOff" in table.stdout
    # Headings count what their tables total: 10 changes in one row, 10 objects over several rows.
    assert "\nChanges: 10\n" in table.stdout and "\nObjects by kind and status: 10\n" in table.stdout
    bad = invoke_inventory("-c", str(config), "report", "--since", "yesterday-ish")
    assert bad.exit_code == 2 and "--since" in bad.stderr


def test_kubernetes_services_down_only_when_their_pods_are(lab: SyncedLab) -> None:
    with lab.db.session() as session:
        report = build_report(session, since=utcnow() - timedelta(days=1))
    down = {(s["namespace"], s["name"]) for s in report["services_without_running_members"]}
    selecting_nothing = {(s["namespace"], s["name"]): s["selector"] for s in report["services_selecting_no_pods"]}
    # default/kubernetes has no selector: its endpoints are the API servers, not pods the inventory knows.
    assert ("default", "kubernetes") not in down and ("default", "kubernetes") not in selecting_nothing
    # A selector no pod carries may still have endpoints: listed as that, not as down.
    assert selecting_nothing[("kube-system", "kube-dns")] == "k8s-app=kube-dns"
    assert ("kube-system", "kube-dns") not in down


def test_a_template_is_neither_a_problem_workload_nor_an_idle_host(lab: SyncedLab) -> None:
    with lab.db.session() as session:
        report = build_report(session, since=utcnow() - timedelta(days=1))
    assert "debian-12-template" not in {w["name"] for w in report["problem_workloads"]}
    assert "debian-12-template" not in {h["name"] for h in report["hosts_without_workloads"]}
