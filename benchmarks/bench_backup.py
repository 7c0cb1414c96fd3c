"""Backup and restore at 500 nodes / 15,000 pods, with history: time and size beside the database's size.

The dataset is Kubernetes-shaped records (bench_reconcile.make_snapshot: nodes, deployments,
pods with labels, owners and attributes) written through reconcile and SqlStore, then five
rounds of 1% churn (changes rows) and 2,000 tool-call audit entries. Per engine, measured in one run:

- the database's size (SQLite: the file after a checkpoint; PostgreSQL: pg_database_size);
- `inventory db backup` (create_backup) time and file size; SQLite both gzip (.db.gz) and plain;
- the floor beside it: SQLite's online backup to a plain file with nothing else (no manifest,
  no gzip); PostgreSQL: a bare `pg_dump --format=custom` of the same database;
- `inventory db restore --force` (restore_backup) time into the same database, which includes
  the checks (manifest sha256, quick_check on SQLite, the audit chain under the key).

    .venv/bin/python benchmarks/bench_backup.py [--nodes 500] [--pods 15000] [--postgres URL]
        [--engines sqlite,postgresql]

Without --postgres a scratch database is created on the local server (INVENTORY_TEST_POSTGRES or
postgres@127.0.0.1) and dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reconcile import FixedConnector, churn, make_snapshot
from sqlalchemy import text
from sqlalchemy.engine import make_url

from inventory.audit.keys import AuditSecrets, attach
from inventory.audit.log import AuditRecord, append
from inventory.backup.pg_tools import find_tool, tool_environment, tool_url
from inventory.backup.restore import restore_backup
from inventory.backup.take import create_backup
from inventory.storage.database import Database, open_database
from inventory.sync import sync_source
from inventory.testing.scratch_postgres import DEFAULT_ADMIN_URL, ScratchDatabase

CHURN_ROUNDS = 5
# Tool-call entries appended besides the syncs' own: the restore checks the whole chain under the key.
AUDIT_ENTRIES = 2000


def build(db: Database, nodes: int, pods: int) -> int:
    """The first sync and the churn rounds; returns the objects stored."""
    workloads = pods
    while workloads - workloads // 20 < pods:  # make_snapshot makes one deployment per 20 workloads
        workloads += 1
    snapshot = make_snapshot(nodes, workloads)
    sync_source(db, FixedConnector(snapshot))
    for round_number in range(CHURN_ROUNDS):
        churned, _ = churn(snapshot, 0.01, seed=100 + round_number)
        sync_source(db, FixedConnector(churned))
    for n in range(AUDIT_ENTRIES):
        record = AuditRecord(event="tool_call", actor="bench", outcome="success", tool="kubernetes.restart_deployment")
        append(db, replace(record, target_name=f"app-{n:04d}", arguments={"namespace": f"ns-{n % 40}"}))
    return len(snapshot.hosts) + len(snapshot.workloads)


def database_size(db: Database) -> int:
    if db.dialect == "sqlite":
        path = make_url(db.url).database or ""
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return os.path.getsize(path)
    with db.engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())


def timed(action: object) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()  # type: ignore[operator]
    return time.perf_counter() - started, result


def floor(db: Database, scratch: Path) -> tuple[str, float, int]:
    out = scratch / "floor.bin"
    if db.dialect == "sqlite":
        path = make_url(db.url).database or ""

        def bare_backup() -> None:
            with closing(sqlite3.connect(path)) as live, closing(sqlite3.connect(out)) as copy:
                live.backup(copy)

        seconds, _ = timed(bare_backup)
        return "bare Connection.backup", seconds, out.stat().st_size
    url, password = tool_url(db.url)
    tool = str(find_tool("pg_dump"))
    with tool_environment(password) as env:
        seconds, _ = timed(
            lambda: subprocess.run([tool, "--format=custom", f"--file={out}", "--dbname", url], env=env, check=True)
        )
    return "bare pg_dump -Fc", seconds, out.stat().st_size


def measure(db: Database, scratch: Path, nodes: int, pods: int) -> list[tuple[str, ...]]:
    attach(db, AuditSecrets(scratch / "audit.key"))
    build_seconds, objects = timed(lambda: build(db, nodes, pods))
    size = database_size(db)
    with db.engine.connect() as conn:
        history = {
            table: int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in ("workloads", "changes", "audit_log")
        }
    rows: list[tuple[str, ...]] = []
    mib = 1024 * 1024
    floor_label, floor_seconds, floor_bytes = floor(db, scratch)
    names = ["backup.db.gz", "backup.db"] if db.dialect == "sqlite" else ["backup.pgdump"]
    for name in names:
        backup_seconds, manifest = timed(lambda name=name: create_backup(db, scratch / name))
        restore_seconds, _ = timed(lambda name=name: restore_backup(db, scratch / name, actor="bench", force=True))
        rows.append(
            (
                db.dialect,
                name,
                f"{objects:,}",
                f"{size / mib:.1f}",
                f"{backup_seconds:.2f}",
                f"{manifest.size / mib:.1f}",  # type: ignore[attr-defined]
                f"{manifest.size / size:.2f}",  # type: ignore[attr-defined]
                f"{restore_seconds:.2f}",
                f"{floor_label} {floor_seconds:.2f}s {floor_bytes / mib:.1f} MiB",
                f"{backup_seconds / floor_seconds:.1f}",
            )
        )
    print(
        f"{db.dialect}: dataset built in {build_seconds:.1f}s (first sync, {CHURN_ROUNDS} rounds of 1% churn, "
        f"{AUDIT_ENTRIES:,} tool-call entries): "
        f"{nodes} nodes, {history['workloads']:,} workload rows (pods, deployments, churned-in pods), "
        f"{history['changes']:,} changes, {history['audit_log']} audit entries"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods", type=int, default=15000)
    parser.add_argument("--postgres", help="an empty PostgreSQL database to use (default: a scratch one)")
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    rows: list[tuple[str, ...]] = []
    for engine in args.engines.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
            scratch = Path(tmp)
            if engine == "sqlite":
                db = open_database(f"sqlite:///{scratch / 'inventory.db'}", migrate=True)
                rows += measure(db, scratch, args.nodes, args.pods)
                db.dispose()
            elif args.postgres:
                db = open_database(args.postgres, migrate=True)
                rows += measure(db, scratch, args.nodes, args.pods)
                db.dispose()
            else:
                admin = os.environ.get("INVENTORY_TEST_POSTGRES", DEFAULT_ADMIN_URL)
                with ScratchDatabase(admin, prefix="inventory_bench_backup") as scratch_db:
                    db = open_database(scratch_db.url, migrate=True)
                    rows += measure(db, scratch, args.nodes, args.pods)
                    db.dispose()
    header = (
        "engine",
        "file",
        "objects",
        "db MiB",
        "backup s",
        "file MiB",
        "file/db",
        "restore s",
        "floor",
        "backup/floor",
    )
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
