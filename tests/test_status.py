"""`inventory status`: freshness per source, and an exit code monitoring and CI can use."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sync_support import run_inventory, write_config, write_inventory

from inventory.storage.database import open_database
from inventory.storage.models import Source, SyncRun


def test_status_ages_and_max_age(tmp_path: Path, migrated_sqlite_url: str) -> None:
    # Status reads through the same queries on both engines (tested there); one engine keeps this fast.
    db = open_database(migrated_sqlite_url, migrate=True)
    files = {"lab": write_inventory(tmp_path / "lab.yaml", 2), "broken": tmp_path / "missing.yaml"}
    config = write_config(tmp_path / "inventory.yaml", db.url, files)
    assert run_inventory("-c", str(config), "sync", "--once").returncode == 1

    shown = run_inventory("-c", str(config), "status", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    rows = {r["source"]: r for r in json.loads(shown.stdout)}
    assert rows["lab"]["last_status"] == "success" and rows["lab"]["hosts"] == 2 and rows["lab"]["age_seconds"] < 60
    assert rows["broken"]["last_success_at"] is None and rows["broken"]["age"] == "never"
    assert "cannot read" in rows["broken"]["last_error"]

    # broken never synced: stale whatever the limit.
    stale = run_inventory("-c", str(config), "status", "--max-age", "1h")
    assert stale.returncode == 1
    assert "STALE source 'broken': never synced successfully" in stale.stderr
    assert "'lab'" not in stale.stderr

    (tmp_path / "missing.yaml").write_text("hosts: []\n")
    assert run_inventory("-c", str(config), "sync", "--once").returncode == 0
    assert run_inventory("-c", str(config), "status", "--max-age", "15m").returncode == 0

    # Two hours pass for lab (its runs are moved back in time).
    with db.write_session() as session:
        for run in session.execute(select(SyncRun).join(Source).where(Source.name == "lab")).scalars():
            assert run.finished_at is not None
            run.finished_at = run.finished_at - timedelta(hours=2)
    old = run_inventory("-c", str(config), "status", "--max-age", "15m")
    assert old.returncode == 1
    assert "STALE source 'lab': last successful sync 2h00m ago (--max-age 15m)" in old.stderr
    assert run_inventory("-c", str(config), "status", "--max-age", "3h").returncode == 0


def test_a_configured_source_never_synced_is_listed(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path / "inventory.yaml", sqlite_url, {"lab": write_inventory(tmp_path / "lab.yaml", 1)})
    result = run_inventory("-c", str(config), "status", "--max-age", "1d")
    assert result.returncode == 1
    assert "lab" in result.stdout and "never" in result.stdout
