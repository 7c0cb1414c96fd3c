"""Reconcile at scale: 1,000 hosts and 20,000 workloads into PostgreSQL and SQLite.

Prints, per engine: first sync, no-change resync and 1% churn (rows/s, rows and
statements written), and in the same run the floor of the machine: a bare COPY
(PostgreSQL) or a bare executemany INSERT (SQLite) of the same object rows into
empty tables of the same shape. Only ratios measured in one run mean anything
on a noisy machine.

    .venv/bin/python benchmarks/bench_reconcile.py [--hosts 1000] [--workloads 20000] [--engines postgresql,sqlite]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inventory.connector import Connector, SourceConfig
from inventory.records import Host, Ref, Snapshot, Workload, record_hash
from inventory.schema import canonical_fields
from inventory.storage.database import open_database
from inventory.sync import sync_source
from inventory.testing.scratch_postgres import ScratchDatabase, libpq_conninfo
from inventory.timeutil import utcnow

POSTGRES_ADMIN_URL = os.environ.get("INVENTORY_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


class FixedConnector(Connector):
    type_name = "bench"

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(SourceConfig(type="bench", name="bench"))
        self.snapshot = snapshot

    def collect(self) -> Snapshot:
        return self.snapshot


def make_snapshot(hosts: int, workloads: int, seed: int = 7) -> Snapshot:
    rng = random.Random(seed)
    host_records = [
        Host(
            "node",
            f"node-uid-{i:05d}",
            f"node-{i:04d}",
            status="Ready",
            hostname=f"node-{i:04d}.lan",
            machine_uuid=str(uuid.UUID(int=rng.getrandbits(128))),
            addresses=(f"10.{i // 250}.{i % 250}.10",),
            labels={"kubernetes.io/arch": "amd64", "node-role.kubernetes.io/worker": ""},
            attributes={"kubelet": "v1.31.2", "cpu": 16, "memory": 68719476736, "os_image": "Debian GNU/Linux 12"},
        )
        for i in range(hosts)
    ]
    deployments = max(1, workloads // 20)
    workload_records = [
        Workload(
            "deployment",
            f"dep-uid-{d:05d}",
            f"app-{d:04d}",
            namespace=f"ns-{d % 40}",
            status="available",
            attributes={"replicas": 19},
        )
        for d in range(deployments)
    ]
    for p in range(workloads - deployments):
        d = p % deployments
        workload_records.append(
            Workload(
                "pod",
                f"pod-uid-{p:06d}",
                f"app-{d:04d}-{p:06d}",
                namespace=f"ns-{d % 40}",
                status="Running",
                host=Ref("node", f"node-uid-{rng.randrange(hosts):05d}"),
                parent=Ref("deployment", f"dep-uid-{d:05d}"),
                labels={"app": f"app-{d:04d}", "pod-template-hash": "7d9f8c6b5"},
                attributes={
                    "pod_ip": f"10.244.{p // 250 % 250}.{p % 250}",
                    "qos": "Burstable",
                    "restarts": 0,
                    "images": [f"registry.lan/app-{d:04d}:1.{d % 9}.0"],
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                },
            )
        )
    return Snapshot(hosts=host_records, workloads=workload_records)


def churn(snapshot: Snapshot, fraction: float, seed: int = 11) -> tuple[Snapshot, dict[str, int]]:
    """Touch `fraction` of all objects: 60% updated, 20% removed, 20% added."""
    rng = random.Random(seed)
    total = len(snapshot.hosts) + len(snapshot.workloads)
    touched = int(total * fraction)
    updates, removals = int(touched * 0.6), int(touched * 0.2)
    additions = touched - updates - removals
    workloads = list(snapshot.workloads)
    pods = [i for i, w in enumerate(workloads) if w.kind == "pod"]
    picked = rng.sample(pods, updates + removals)
    for i in picked[:updates]:
        workloads[i] = replace(
            workloads[i], status="CrashLoopBackOff", attributes={**workloads[i].attributes, "restarts": 5}
        )
    gone = set(picked[updates:])
    workloads = [w for i, w in enumerate(workloads) if i not in gone]
    template = workloads[-1]
    workloads += [replace(template, external_id=f"pod-uid-new-{n:05d}", name=f"new-{n:05d}") for n in range(additions)]
    return Snapshot(hosts=snapshot.hosts, workloads=workloads), {
        "updated": updates,
        "removed": removals,
        "created": additions,
    }


def object_rows_for_floor(snapshot: Snapshot) -> tuple[list[tuple], list[tuple]]:
    """The same object rows the first sync writes, as plain tuples (ids and links precomputed)."""
    now = utcnow()
    host_ids = {h.external_id: i + 1 for i, h in enumerate(snapshot.hosts)}
    workload_ids = {(w.kind, w.external_id): i + 1 for i, w in enumerate(snapshot.workloads)}
    hosts = []
    for h in snapshot.hosts:
        f = canonical_fields(h)
        hosts.append(
            (
                host_ids[h.external_id],
                1,
                h.kind,
                h.external_id,
                h.name,
                h.status,
                json.dumps(f["labels"]),
                json.dumps(f["attributes"]),
                record_hash(h),
                now,
                now,
                None,
                h.hostname,
                h.machine_uuid,
                json.dumps(f["mac_addresses"]),
                json.dumps(f["addresses"]),
                None,
            )
        )
    workloads = []
    for w in snapshot.workloads:
        f = canonical_fields(w)
        workloads.append(
            (
                workload_ids[(w.kind, w.external_id)],
                1,
                w.kind,
                w.external_id,
                w.name,
                w.status,
                json.dumps(f["labels"]),
                json.dumps(f["attributes"]),
                record_hash(w),
                now,
                now,
                None,
                w.namespace,
                host_ids.get(w.host.external_id) if w.host else None,
                workload_ids.get((w.parent.kind, w.parent.external_id)) if w.parent else None,
            )
        )
    return hosts, workloads


HOST_COLUMNS = (
    "id, source_id, kind, external_id, name, status, labels, attributes, content_hash, first_seen_at, changed_at, "
    "removed_at, hostname, machine_uuid, mac_addresses, addresses, backing_workload_id"
)
WORKLOAD_COLUMNS = (
    "id, source_id, kind, external_id, name, status, labels, attributes, content_hash, first_seen_at, changed_at, "
    "removed_at, namespace, host_id, parent_id"
)


def floor_postgres(url: str, hosts: list[tuple], workloads: list[tuple]) -> float:
    import psycopg

    with psycopg.connect(libpq_conninfo(url)) as conn:
        conn.execute("CREATE TABLE floor_hosts (LIKE hosts INCLUDING ALL)")
        conn.execute("CREATE TABLE floor_workloads (LIKE workloads INCLUDING ALL)")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur:
            with cur.copy(f"COPY floor_hosts ({HOST_COLUMNS}) FROM STDIN") as copy:
                for row in hosts:
                    copy.write_row(row)
            with cur.copy(f"COPY floor_workloads ({WORKLOAD_COLUMNS}) FROM STDIN") as copy:
                for row in workloads:
                    copy.write_row(row)
        conn.commit()
        return time.perf_counter() - started


def floor_sqlite(path: str, hosts: list[tuple], workloads: list[tuple]) -> float:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for table in ("hosts", "workloads"):
        ddl = conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone()[0]
        # Same columns, primary key and unique constraint; no foreign keys, as LIKE ... INCLUDING ALL on PostgreSQL.
        ddl = re.sub(rf'CREATE TABLE "?{table}"?', f"CREATE TABLE floor_{table}", ddl, count=1)
        ddl = re.sub(r"CONSTRAINT (pk|uq)_", r"CONSTRAINT floor_\1_", ddl)
        lines = [line for line in ddl.splitlines() if "FOREIGN KEY" not in line]
        conn.execute("\n".join(lines).rstrip().rstrip(",").rstrip(")").rstrip().rstrip(",") + "\n)")
    started = time.perf_counter()
    conn.execute("BEGIN")
    for table, columns, rows in (("hosts", HOST_COLUMNS, hosts), ("workloads", WORKLOAD_COLUMNS, workloads)):
        marks = ", ".join("?" for _ in columns.split(","))
        conn.executemany(
            f"INSERT INTO floor_{table} ({columns}) VALUES ({marks})",
            [tuple(v.isoformat(" ") if hasattr(v, "isoformat") else v for v in row) for row in rows],
        )
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def run_engine(
    engine_name: str, url: str, snapshot: Snapshot, churned: Snapshot, floor_file: str | None
) -> dict[str, float]:
    db = open_database(url, migrate=True)
    objects = snapshot.object_count
    results: dict[str, float] = {}
    print(f"\n== {engine_name}: {len(snapshot.hosts):,} hosts + {len(snapshot.workloads):,} workloads")
    print(f"{'phase':<18}{'seconds':>9}{'objects/s':>12}{'object rows':>13}{'change rows':>13}{'statements':>12}")
    for phase, snap in (("first sync", snapshot), ("no-change resync", snapshot), ("1% churn", churned)):
        started = time.perf_counter()
        outcome = sync_source(db, FixedConnector(snap))
        elapsed = time.perf_counter() - started
        r = outcome.result
        assert outcome.status == "success" and r is not None, outcome.error
        object_rows = r.created + r.updated + r.revived + r.removed
        print(
            f"{phase:<18}{elapsed:>9.3f}{objects / elapsed:>12,.0f}{object_rows:>13,}"
            f"{r.changed:>13,}{r.statements:>12,}"
        )
        results[phase] = elapsed
        results[f"{phase} rows"] = object_rows
    hosts, workloads = object_rows_for_floor(snapshot)
    if engine_name == "postgresql":
        floor = floor_postgres(url, hosts, workloads)
        floor_label = "bare COPY"
    else:
        floor = floor_sqlite(floor_file or "", hosts, workloads)
        floor_label = "bare executemany INSERT"
    db.dispose()
    results["floor"] = floor
    first = results["first sync"]
    print(f"{floor_label:<18}{floor:>9.3f}{objects / floor:>12,.0f}{objects:>13,}{0:>13}{2:>12}")
    print(
        f"ratios: first sync rate / {floor_label} rate = {floor / first:.2f} (goal >= 0.5 on PostgreSQL); "
        f"1% churn / first sync = {results['1% churn'] / first:.3f} (goal <= 0.05); "
        f"no-change resync object rows written = {int(results['no-change resync rows'])} (goal 0)"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--workloads", type=int, default=20000)
    parser.add_argument("--engines", default="postgresql,sqlite")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="fresh database per round; ratios are reported per round and as the median",
    )
    args = parser.parse_args()

    snapshot = make_snapshot(args.hosts, args.workloads)
    churned, touched = churn(snapshot, 0.01)
    print(f"churn: {touched}")
    summary = []
    for engine_name in args.engines.split(","):
        ratios: dict[str, list[float]] = {"rate": [], "churn": [], "churn_increment": []}
        for _ in range(args.rounds):
            if engine_name == "postgresql":
                with ScratchDatabase(POSTGRES_ADMIN_URL) as scratch:
                    res = run_engine("postgresql", scratch.url, snapshot, churned, None)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    res = run_engine("sqlite", f"sqlite:///{tmp}/bench.db", snapshot, churned, f"{tmp}/bench.db")
            ratios["rate"].append(res["floor"] / res["first sync"])
            ratios["churn"].append(res["1% churn"] / res["first sync"])
            ratios["churn_increment"].append((res["1% churn"] - res["no-change resync"]) / res["first sync"])
        med = {k: statistics.median(v) for k, v in ratios.items()}
        summary.append(
            f"{engine_name}: median of {args.rounds} rounds: first-sync rate / floor rate = {med['rate']:.2f}; "
            f"1% churn time / first sync = {med['churn']:.3f}; (1% churn - no-change resync) / first sync = "
            f"{med['churn_increment']:.3f}"
        )
    print("\n" + "\n".join(summary))


if __name__ == "__main__":
    main()
