"""Thirty days of Kubernetes churn, fast-forwarded, with and without retention.

A cluster of 500 nodes and 15,000 pods (3,000 Deployments of 5 replicas, each with a Service)
lives through simulated days: 20 CronJobs start a Job and its pod every 5 minutes, every
Deployment rolls out once a day (a new ReplicaSet and 5 new pods; Kubernetes keeps the previous
ReplicaSet scaled to zero), and 1% of the pods restart a container a day. Records have the
shapes the Kubernetes connector builds (connectors/kubernetes/records.py).

A day's churn is batched into ``--syncs-per-day`` syncs (default 4) through the real sync path
(``SourceRunner`` via ``sync_source``): each sync carries the CronJob runs since the previous one
(created in it, removed in the next) and a quarter of the day's rollouts, so the database sees
a day's rows created, changed and removed as a 5-minute sync would, in a few syncs. A fake
clock stands in for ``utcnow`` everywhere the store, reconcile, the sync, the audit log and
``--since`` read it, so ``removed_at``, change times and retention windows follow simulated time.

At day 1 and at day 30 it times (median of ``--repeat``) the CLI in-process (click's runner,
a new engine per command as a user's run has): ``workloads list``, ``workloads show NAME``,
``changes --since 1h``, and a no-change resync of the whole source; and it reports the database
size. Each command's wall time and this process's CPU time are printed: on a machine shared with
other work the wall medians of a few samples move by tens of percent between runs, the CPU ones
far less (a day-30 / day-1 ratio is read from the CPU rows first; on PostgreSQL they are the client's,
the server's work is in the wall time only). "with retention" prunes after
each sync (as the loop's hourly schedule would) with the windows below; "without" keeps
everything, as before retention existed.

Day 1 and day 30 are timed side by side: at day 1 each database is copied as it is (SQLite's
backup API; PostgreSQL ``CREATE DATABASE ... TEMPLATE``, statistics and bloat included), and at
day 30 the copy and the living database are measured in alternation, one sample of each command on
each in turn, with the fake clock set to each one's own time. A machine whose load changes in the
minutes between day 1 and day 30 (other processes, a shared CI runner) then weighs on both columns
alike, and the day 30 / day 1 ratio is the database's, not the machine's. The day-1 figures taken
at day 1 itself are printed too (``day 1 then``).

The default windows here are shorter than the config's (removed objects 1d, changes 7d, sync
runs 7d instead of 30d / 180d / 30d) so that 30 simulated days reach retention's steady state:
with window W the database holds W days of churn from day W on, so with the defaults day 30
is the first day of the steady state, and the soak would need 60 days to show it.
``--removed 30d --days 60`` runs that (it takes about twice as long). The cluster starts as a
day finds it (a batch of CronJob runs listed, each Deployment's previous ReplicaSet kept), so
that day 1's syncs carry the same churn as day 30's; before measuring it prunes once more, as
the loop's hourly prune would have since the last sync.

    .venv/bin/python benchmarks/bench_retention_soak.py                      # SQLite, full scale
    .venv/bin/python benchmarks/bench_retention_soak.py --scale 0.2 --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reconcile import FixedConnector  # a source that answers one snapshot
from click.testing import CliRunner
from sqlalchemy import create_engine, make_url, text

from inventory.cli import cli
from inventory.config import RetentionSettings
from inventory.records import Host, Ref, Service, Snapshot, Workload
from inventory.retention import prune
from inventory.storage.database import Database, open_database
from inventory.sync import sync_source
from inventory.testing.scratch_postgres import ScratchDatabase
from inventory.timeutil import parse_duration

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NAMESPACES = 50
REPLICAS = 5
CRON_EVERY = timedelta(minutes=5)
CRON_HISTORY = 3  # successfulJobsHistoryLimit: the newest runs stay listed until the next batch replaces them
# Modules that stamp times with ``utcnow``: the fake clock replaces their name for it.
CLOCKED = (
    "inventory.timeutil",
    "inventory.sync",
    "inventory.reconcile",
    "inventory.storage.store",
    "inventory.audit.log",
    "inventory.retention",
    "inventory.loop",
)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def install(self) -> None:
        for name in CLOCKED:
            module = importlib.import_module(name)
            module.utcnow = self  # type: ignore[attr-defined]


class Cluster:
    """The cluster's state, and the snapshot a sync reads at a given moment."""

    def __init__(self, nodes: int, pods: int, cronjobs: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.nodes = [self._node(i) for i in range(nodes)]
        self.node_refs = [Ref("node", n.external_id) for n in self.nodes]
        self.deployments = max(1, (pods - cronjobs * CRON_HISTORY) // REPLICAS)
        # Revision 2 at the start: the previous ReplicaSet is there, as after any rollout.
        self.revision = [2] * self.deployments
        self.restarts: dict[str, int] = {}
        self.cronjobs = cronjobs
        self.cron_runs: list[int] = []  # run numbers of the current batch

    def _node(self, i: int) -> Host:
        name = f"node-{i:04d}"
        return Host(
            kind="node",
            external_id=f"node-uid-{i:05d}",
            name=name,
            status="Ready",
            hostname=name,
            machine_uuid=f"{i:08x}-0000-4000-8000-000000000000",
            addresses=(f"10.1.{i // 250}.{i % 250 + 1}",),
            labels={"kubernetes.io/hostname": name, "node.kubernetes.io/instance-type": "m6i.2xlarge"},
            attributes={
                "roles": ["worker"],
                "ready": True,
                "unschedulable": False,
                "kubelet_version": "v1.31.4",
                "kernel_version": "6.8.0-1019-aws",
                "os_image": "Ubuntu 24.04.1 LTS",
                "architecture": "amd64",
                "container_runtime": "containerd://1.7.24",
                "capacity": {"cpu": "8", "memory": "32386112Ki", "pods": "110"},
                "allocatable": {"cpu": "7910m", "memory": "31371328Ki", "pods": "110"},
                "internal_ips": [f"10.1.{i // 250}.{i % 250 + 1}"],
                "provider_id": f"aws:///eu-west-1a/i-{i:017x}",
                "pod_cidrs": [f"100.64.{i}.0/24"],
                "taints": [],
            },
        )

    def rollout(self, group: int, groups: int) -> None:
        for d in range(group, self.deployments, groups):
            self.revision[d] += 1

    def restart_some(self, fraction: float) -> None:
        for _ in range(int(self.deployments * REPLICAS * fraction)):
            d = self.rng.randrange(self.deployments)
            key = f"pod-{d}-{self.revision[d]}-{self.rng.randrange(REPLICAS)}"
            self.restarts[key] = self.restarts.get(key, 0) + 1

    def next_cron_batch(self, first_run: int, runs: int) -> None:
        self.cron_runs = list(range(first_run, first_run + runs))

    def snapshot(self) -> Snapshot:
        workloads: list[Workload] = []
        services: list[Service] = []
        for d in range(self.deployments):
            namespace, app = f"team-{d % NAMESPACES:02d}", f"app-{d:04d}"
            revision = self.revision[d]
            image = f"registry.example.com/{app}:1.{revision}.0"
            deployment = Ref("deployment", f"deploy-{d}")
            labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": namespace}
            workloads.append(
                Workload(
                    kind="deployment",
                    external_id=deployment.external_id,
                    name=app,
                    namespace=namespace,
                    status="Available",
                    labels=labels,
                    attributes={"replicas": REPLICAS, "ready": REPLICAS, "images": [image], "revision": revision},
                )
            )
            members = []
            for rev in (revision - 1, revision):
                if rev < 1:
                    continue
                workloads.append(
                    Workload(
                        kind="replicaset",
                        external_id=f"rs-{d}-{rev}",
                        name=f"{app}-{rev:010x}",
                        namespace=namespace,
                        status="Ready" if rev == revision else "ScaledDown",
                        parent=deployment,
                        labels={**labels, "pod-template-hash": f"{rev:010x}"},
                        attributes={"desired": REPLICAS if rev == revision else 0, "images": [image]},
                    )
                )
            for i in range(REPLICAS):
                uid = f"pod-{d}-{revision}-{i}"
                node = (d * REPLICAS + i) % len(self.nodes)
                members.append(Ref("pod", uid))
                workloads.append(
                    Workload(
                        kind="pod",
                        external_id=uid,
                        name=f"{app}-{revision:010x}-{i:05d}",
                        namespace=namespace,
                        status="Running",
                        host=self.node_refs[node],
                        parent=Ref("replicaset", f"rs-{d}-{revision}"),
                        labels={**labels, "pod-template-hash": f"{revision:010x}"},
                        attributes={
                            "phase": "Running",
                            "node": self.nodes[node].name,
                            "pod_ip": f"100.64.{node}.{(d + i) % 250 + 2}",
                            "host_ip": self.nodes[node].addresses[0],
                            "qos_class": "Burstable",
                            "ready": True,
                            "restart_count": self.restarts.get(uid, 0),
                            "containers": [
                                {
                                    "name": "app",
                                    "image": image,
                                    "requests": {"cpu": "100m", "memory": "128Mi"},
                                    "limits": {"memory": "512Mi"},
                                }
                            ],
                            "owner": {"kind": "ReplicaSet", "name": f"{app}-{revision:010x}"},
                        },
                    )
                )
            services.append(
                Service(
                    kind="service",
                    external_id=f"svc-{d}",
                    name=app,
                    namespace=namespace,
                    status="ClusterIP",
                    members=tuple(members),
                    labels=labels,
                    attributes={"type": "ClusterIP", "ports": [{"port": 80, "target_port": 8080, "protocol": "TCP"}]},
                )
            )
        for c in range(self.cronjobs):
            cronjob = Ref("cronjob", f"cron-{c}")
            workloads.append(
                Workload(
                    kind="cronjob",
                    external_id=cronjob.external_id,
                    name=f"report-{c:02d}",
                    namespace="batch",
                    status="Active",
                    attributes={"schedule": "*/5 * * * *", "suspend": False},
                )
            )
            for run in self.cron_runs:
                job = Ref("job", f"job-{c}-{run}")
                workloads.append(
                    Workload(
                        kind="job",
                        external_id=job.external_id,
                        name=f"report-{c:02d}-{29_000_000 + run}",
                        namespace="batch",
                        status="Complete",
                        parent=cronjob,
                        attributes={"completions": 1, "succeeded": 1, "failed": 0, "active": 0},
                    )
                )
                node = (c * 7919 + run) % len(self.nodes)
                workloads.append(
                    Workload(
                        kind="pod",
                        external_id=f"cronpod-{c}-{run}",
                        name=f"report-{c:02d}-{29_000_000 + run}-{run % 99_991:05x}",
                        namespace="batch",
                        status="Succeeded",
                        host=self.node_refs[node],
                        parent=job,
                        attributes={"phase": "Succeeded", "node": self.nodes[node].name, "restart_count": 0},
                    )
                )
        return Snapshot(hosts=list(self.nodes), workloads=workloads, services=services)


class Soak:
    """One database living through the days, with or without retention."""

    def __init__(self, url: str, label: str, retention: RetentionSettings | None, options: Any) -> None:
        self.url, self.label, self.retention, self.options = url, label, retention, options
        self.db = open_database(url, migrate=True)
        self.cluster = Cluster(options.nodes, options.pods, options.cronjobs)
        self.cron_run = 0
        self.pruned = 0
        # The database as day 1 left it, with the cluster and the clock of that moment (see copy_day).
        self.day1: tuple[str, Cluster, datetime] | None = None

    def sync(self, clock: FakeClock) -> Any:
        outcome = sync_source(self.db, FixedConnector(self.cluster.snapshot()))
        assert outcome.status == "success", outcome.error
        if self.retention is not None:
            self.pruned += prune(self.db, self.retention).total
        return outcome

    def live_day(self, clock: FakeClock, day: int) -> None:
        syncs = self.options.syncs_per_day
        step = timedelta(days=1) / syncs
        runs = int(step / CRON_EVERY)
        for k in range(syncs):
            clock.now = T0 + timedelta(days=day - 1) + step * (k + 1)
            self.cluster.rollout(k, syncs)
            self.cluster.restart_some(0.01 / syncs)
            self.cluster.next_cron_batch(self.cron_run, runs)
            self.cron_run += runs
            self.sync(clock)
        if self.db.dialect == "postgresql":
            # Autovacuum runs many times in a real day; fast-forwarded, it would hardly run at all.
            with self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))

    def prepare(self, clock: FakeClock) -> datetime:
        """Half an hour after the day's last sync (the loop prunes every hour): the time to measure at."""
        clock.now += timedelta(minutes=30)  # the last sync's changes are within the hour
        if self.retention is not None:
            self.pruned += prune(self.db, self.retention).total
        return clock.now

    def copy_day(self, clock: FakeClock, admin_url: str | None) -> None:
        """Keep a copy of the database as it is now, to be measured again beside day 30."""
        url = make_url(self.url)
        if self.db.dialect == "sqlite":
            assert url.database is not None
            target = f"{url.database}.day1"
            with sqlite3.connect(url.database) as source, sqlite3.connect(target) as copied:
                source.backup(copied)
            copy_url = f"sqlite:///{target}"
        else:
            assert admin_url is not None
            self.db.dispose()  # a template database must have no sessions
            name = f"{url.database}_day1"
            admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{url.database}"'))
            admin.dispose()
            copy_url = url.set(database=name).render_as_string(hide_password=False)
        self.day1 = (copy_url, copy.deepcopy(self.cluster), clock.now)

    def measure(self, clock: FakeClock, *, beside_day1: bool = False) -> dict[str, dict[str, float]]:
        """Median of ``repeat`` samples of each command: on this database (key "now") and, with
        ``beside_day1``, on the day-1 copy too ("day 1"), one sample of each in alternation."""
        now = clock.now
        targets = {"now": (self.url, self.db, self.cluster, now)}
        if beside_day1:
            assert self.day1 is not None
            url, cluster, then = self.day1
            targets["day 1"] = (url, open_database(url), cluster, then)
        runner = CliRunner()
        show = f"team-{7 % NAMESPACES:02d}/app-0007"
        commands: dict[str, list[str] | None] = {
            "workloads list": ["workloads", "list"],
            "workloads show": ["workloads", "show", show],
            "changes --since 1h": ["changes", "--since", "1h"],
            "no-change resync": None,
        }

        def once(target: str, name: str) -> tuple[float, float, int]:
            """(wall seconds, CPU seconds of this process, full garbage collections) of one sample."""
            url, db, cluster, at = targets[target]
            clock.now = at
            args = commands[name]
            snapshot = cluster.snapshot() if args is None else None
            started, cpu, full = time.perf_counter(), time.process_time(), gc.get_stats()[2]["collections"]
            if args is None:
                assert snapshot is not None
                outcome = sync_source(db, FixedConnector(snapshot))
                assert outcome.result is not None and outcome.result.changed == 0, "a resync found changes"
            else:
                result = runner.invoke(cli, ["--database-url", url, *args], catch_exceptions=False)
                assert result.exit_code == 0, result.output[-2000:]
            return time.perf_counter() - started, time.process_time() - cpu, gc.get_stats()[2]["collections"] - full

        for target in targets:
            for name in commands:
                once(target, name)  # untimed: lazy imports, a warm cache
        # As a user's process (inventory.cli.context.resume_gc): what exists before the command is frozen, out of
        # the collector's way. Unfrozen, the soak's own objects (two clusters, their day-1 copies, 30 days of
        # SQLAlchemy and pydantic caches) made each full collection cost ~0.05-0.2 s, a command's whole time,
        # landing in whichever sample crossed the threshold: day-30 / day-1 ratios of 0.5x to 1.5x from run to run.
        gc.collect()
        gc.freeze()
        samples: dict[tuple[str, str], list[tuple[float, float, int]]] = {(t, n): [] for t in targets for n in commands}
        try:
            for round_ in range(self.options.repeat):
                for name in commands:
                    order = list(targets) if round_ % 2 == 0 else list(reversed(targets))
                    for target in order:
                        samples[(target, name)].append(once(target, name))
        finally:
            gc.unfreeze()
        clock.now = now
        figures: dict[str, dict[str, float]] = {}
        for target, (_url, db, _cluster, _at) in targets.items():
            figures[target] = {name: statistics.median(s[0] for s in samples[(target, name)]) for name in commands}
            figures[target].update(
                {f"{name} CPU": statistics.median(s[1] for s in samples[(target, name)]) for name in commands}
            )
            figures[target]["full GCs"] = sum(s[2] for name in commands for s in samples[(target, name)])
            figures[target]["db MB"] = database_bytes(db) / 1e6
            figures[target]["workload rows"] = self._count(db, "workloads")
            figures[target]["change rows"] = self._count(db, "changes")
            if db is not self.db:
                db.dispose()
        return figures

    @staticmethod
    def _count(db: Database, table: str) -> float:
        with db.engine.connect() as conn:
            return float(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def database_bytes(db: Database) -> int:
    """Bytes the data takes: pages in use on SQLite (freed pages are reused, not returned); PostgreSQL: the database."""
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            pages = conn.execute(text("PRAGMA page_count")).scalar_one()
            free = conn.execute(text("PRAGMA freelist_count")).scalar_one()
            size = conn.execute(text("PRAGMA page_size")).scalar_one()
            return int((pages - free) * size)
        return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())


def run(urls: dict[str, str], options: Any) -> None:
    clock = FakeClock()
    clock.install()
    windows = RetentionSettings(
        removed_objects=parse_duration(options.removed),
        changes=parse_duration(options.changes),
        sync_runs=parse_duration(options.runs),
    )
    soaks = [Soak(urls["with"], "with retention", windows, options), Soak(urls["without"], "without", None, options)]
    results: dict[tuple[str, Any], dict[str, float]] = {}
    loads: list[str] = []  # the load average before and after each day-30 measurement
    started = time.perf_counter()
    for soak in soaks:
        clock.now = T0
        # The cluster as the simulated days find it: a batch of CronJob runs listed, which day 1 replaces.
        soak.cluster.next_cron_batch(0, int(timedelta(days=1) / options.syncs_per_day / CRON_EVERY))
        soak.cron_run = len(soak.cluster.cron_runs)
        first = soak.sync(clock)
        print(
            f"{soak.label}: first sync of {first.objects:,} objects "
            f"({len(soak.cluster.nodes)} nodes, {soak.cluster.deployments * REPLICAS:,} deployment pods)",
            flush=True,
        )
    # Both databases live each day in turn and are measured one right after the other: a machine
    # busier at one moment than another weighs on both columns of that day alike.
    for day in range(1, options.days + 1):
        for soak in soaks:
            soak.live_day(clock, day)
            if day == 1:
                soak.prepare(clock)
                results[(soak.label, "then")] = soak.measure(clock)["now"]
                soak.copy_day(clock, options.postgres)
            if day == options.days:
                soak.prepare(clock)
                load = os.getloadavg()[0]
                measured = soak.measure(clock, beside_day1=True)
                loads.append(f"{soak.label} {load:.2f} -> {os.getloadavg()[0]:.2f}")
                results[(soak.label, 1)], results[(soak.label, day)] = measured["day 1"], measured["now"]
            if day in (1, options.days):
                print(f"  {soak.label}: day {day} measured ({time.perf_counter() - started:.0f}s in)", flush=True)
    for soak in soaks:
        soak.db.dispose()
        if soak.day1 is not None and options.postgres:
            admin = create_engine(options.postgres, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(soak.day1[0]).database}" WITH (FORCE)'))
            admin.dispose()
    report(results, soaks, options, loads)


def report(results: dict[tuple[str, Any], dict[str, float]], soaks: list[Soak], options: Any, loads: list[str]) -> None:
    last = options.days
    timed = ("workloads list", "workloads show", "changes --since 1h", "no-change resync")
    # Wall time, then this process's CPU time: on a shared machine the CPU figures move far less with the load.
    keys = (
        *timed,
        *(f"{key} CPU" for key in timed),
        "full GCs",
        "db MB",
        "workload rows",
        "change rows",
    )
    print(
        f"\n{options.engine}: {options.nodes} nodes, ~{options.pods:,} pods, {options.cronjobs} CronJobs every 5 min, "
        f"a rollout a day per Deployment, {options.syncs_per_day} syncs a day; retention windows: removed objects "
        f"{options.removed}, changes {options.changes}, sync runs {options.runs}; median of {options.repeat}; "
        f"d1 = the day-1 copy measured beside day {last}, in alternation"
    )
    header = f"{'':<26}" + "".join(f"{s.label + ' d' + str(d):>22}" for s in soaks for d in (1, last))
    print(header + f"{'with d' + str(last) + '/d1':>14}{'without d' + str(last) + '/d1':>17}")
    for key in keys:
        cells = []
        for soak in soaks:
            for day in (1, last):
                value = results[(soak.label, day)][key]
                cells.append(f"{value:>22,.0f}" if ("rows" in key or "GC" in key) else f"{value:>22.3f}")
        ratios = [results[(s.label, last)][key] / max(results[(s.label, 1)][key], 1e-9) for s in soaks]
        unit = "" if ("rows" in key or "MB" in key or "GC" in key) else " s"
        print(f"{key + unit:<26}" + "".join(cells) + f"{ratios[0]:>14.2f}x{ratios[1]:>16.2f}x")
    with_last, without_last = results[(soaks[0].label, last)], results[(soaks[1].label, last)]
    slower = ", ".join(f"{key} {without_last[key] / max(with_last[key], 1e-9):.2f}x" for key in (*timed, "db MB"))
    print(f"day {last}, without retention / with: {slower}")
    then = ", ".join(f"{key} {results[(s.label, 'then')][key]:.3f} s" for s in soaks[:1] for key in timed)
    print(f"day 1 then (with retention, measured at day 1 itself, before the machine's load moved on): {then}")
    print(f"rows pruned in all (with retention): {soaks[0].pruned:,}")
    print(f"load average while measuring day {last}: {', '.join(loads)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--scale", type=float, default=1.0, help="Fraction of 500 nodes / 15,000 pods / 20 CronJobs.")
    parser.add_argument("--syncs-per-day", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=9, help="Samples per command and database (median).")
    parser.add_argument("--removed", default="1d", help="Retention of removed objects (with retention).")
    parser.add_argument("--changes", default="7d", help="Retention of change rows (with retention).")
    parser.add_argument("--runs", default="7d", help="Retention of sync runs (with retention).")
    parser.add_argument("--postgres", metavar="URL", help="An admin URL: run on PostgreSQL scratch databases.")
    options = parser.parse_args()
    options.nodes = max(2, round(500 * options.scale))
    options.pods = max(10, round(15_000 * options.scale))
    options.cronjobs = max(1, round(20 * options.scale))
    options.engine = "PostgreSQL" if options.postgres else "SQLite"
    with tempfile.TemporaryDirectory(prefix="bench_retention_soak") as tmp:
        # The CLI reads no config of this machine; the audit key of the sync summaries lives here too.
        os.environ["XDG_CONFIG_HOME"] = os.environ["XDG_DATA_HOME"] = tmp
        if options.postgres:
            with (
                ScratchDatabase(options.postgres, prefix="inventory_bench_soak") as with_db,
                ScratchDatabase(options.postgres, prefix="inventory_bench_soak") as without_db,
            ):
                run({"with": with_db.url, "without": without_db.url}, options)
        else:
            run({"with": f"sqlite:///{tmp}/with.db", "without": f"sqlite:///{tmp}/without.db"}, options)


if __name__ == "__main__":
    main()
