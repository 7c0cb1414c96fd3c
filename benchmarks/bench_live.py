"""Live sources: change-to-visible latency through the core, and the idle CPU of a watching runner.

A scripted streaming connector (the far side: ``collect`` lists 2,000 containers, ``watch`` yields the
deltas fed to it) is followed by a real ``LiveSource`` into SQLite and PostgreSQL. Per engine it prints:

- latency: from a change fed at the far side until ``queries.list_changes`` returns its row (polled
  every 5 ms by a reader in the same process), p50 / p95 / max over ``--changes`` changes fed one at a time;
  the floor beside it: one bare write transaction of one change row's size on the same database;
- idle CPU: the process's CPU seconds over ``--idle`` seconds of watching with nothing changing (default
  60 s; the watch itself sleeps in a queue read, the runner wakes every 0.25 s and beats every 30 s).

    .venv/bin/python benchmarks/bench_live.py [--changes 200] [--idle 60] [--engines sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from inventory.connector import Connector, ConnectorRegistry, SourceConfig
from inventory.live import LiveSource
from inventory.queries import list_changes
from inventory.records import Host, Ref, Snapshot, Workload
from inventory.storage.database import Database, open_database
from inventory.sync import SourceRunner
from inventory.testing.scratch_postgres import ScratchDatabase
from inventory.timeutil import utcnow

POSTGRES_ADMIN_URL = os.environ.get("INVENTORY_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
CONTAINERS = 2000


class Far:
    def __init__(self) -> None:
        self.status = {f"c{i:05d}": "running" for i in range(CONTAINERS)}
        self.events: queue.Queue[Snapshot] = queue.Queue()

    def record(self, name: str) -> Workload:
        return Workload("container", name, f"app-{name}", status=self.status[name], host=Ref("node", "n1"))


class StreamConnector(Connector):
    type_name = "bench-stream"
    streams = True
    far: ClassVar[Far]

    def collect(self) -> Snapshot:
        host = Host("node", "n1", "node-1", status="Ready")
        return Snapshot(hosts=[host], workloads=[self.far.record(n) for n in sorted(self.far.status)])

    def watch(self, stop: threading.Event) -> Iterator[Snapshot]:
        while not stop.is_set():
            try:
                yield self.far.events.get(timeout=0.5)
            except queue.Empty:
                continue


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def floor_ms(db: Database, rounds: int = 50) -> float:
    """One bare write transaction inserting and deleting a row of a scratch table: the database's own cost."""
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS bench_floor (id INTEGER PRIMARY KEY, body TEXT)"))
    times = []
    for i in range(rounds):
        started = time.perf_counter()
        with db.write_session() as session:
            session.execute(text("INSERT INTO bench_floor (id, body) VALUES (:i, :b)"), {"i": i, "b": "x" * 200})
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def run(engine: str, url: str, changes: int, idle: float) -> None:
    far = Far()
    connector = type("Stream", (StreamConnector,), {"far": far})
    db = open_database(url, migrate=True)
    runner = SourceRunner(db, ConnectorRegistry.of(connector), configured=["bench"])
    live = LiveSource(runner, SourceConfig(type="bench-stream", name="bench"))
    live.start()
    try:
        while live.stats.state != "watching":
            time.sleep(0.01)
        since = utcnow() - timedelta(minutes=1)
        latencies = []
        names = sorted(far.status)
        for i in range(changes):
            name = names[i % len(names)]
            far.status[name] = "stopped" if far.status[name] == "running" else "running"
            delta = Snapshot.changes()
            delta.workloads.append(far.record(name))
            started = time.perf_counter()
            far.events.put(delta)
            while True:
                with db.session() as session:
                    if len(list_changes(session, since=since, action="updated")) > i:
                        break
                time.sleep(0.005)
            latencies.append(time.perf_counter() - started)
        ms = [x * 1000 for x in latencies]
        print(
            f"{engine:10} latency over {changes} changes (source of {CONTAINERS} containers): "
            f"p50 {percentile(ms, 0.5):.1f} ms, p95 {percentile(ms, 0.95):.1f} ms, max {max(ms):.1f} ms; "
            f"floor (one bare write transaction) {floor_ms(db):.1f} ms"
        )
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        time.sleep(idle)
        cpu = time.process_time() - cpu_before
        wall = time.perf_counter() - wall_before
        print(
            f"{engine:10} idle: {cpu:.2f} CPU s over {wall:.0f} s of watching with nothing changing "
            f"({100 * cpu / wall:.2f}% of one core)"
        )
    finally:
        live.request_stop()
        live.join(10)
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle watching measured")
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    for engine in args.engines.split(","):
        if engine == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                run(engine, f"sqlite:///{tmp}/bench.db", args.changes, args.idle)
        elif engine == "postgresql":
            with ScratchDatabase(POSTGRES_ADMIN_URL, prefix="inventory_bench") as scratch:
                run(engine, scratch.url, args.changes, args.idle)
        else:
            parser.error(f"unknown engine {engine!r} (sqlite, postgresql)")


if __name__ == "__main__":
    main()
