"""Kubernetes connector at scale: a 500-node, 15,000-pod fake cluster synced into PostgreSQL.

    .venv/bin/python benchmarks/bench_kubernetes.py [--nodes 500] [--pods 15000] [--postgres URL]

The fake API server runs in its own process (as a real API server would), so
that its work is not charged to the sync. Printed, all measured in this run:

- raw fetch floor: the same list calls as the connector (same page size, same
  client, same auth), each page parsed as JSON and thrown away;
- full sync: collect + reconcile into an empty PostgreSQL database, and the
  ratio of the two (goal: within 2x of the floor);
- no-change resync: the same cluster again (every object unchanged);
- peak RSS of this process (goal: under 300 MB).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.kubernetes import KubernetesConfig, KubernetesConnector  # noqa: E402
from connectors.kubernetes_api import API_PATHS, KubernetesApi, cyclic_gc_paused  # noqa: E402
from inventory.storage.database import open_database  # noqa: E402
from inventory.storage.models import HostRow, ServiceMember, WorkloadRow  # noqa: E402
from inventory.sync import sync_source  # noqa: E402

GOAL_RATIO = 2.0
GOAL_RSS_MB = 300


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def start_fake(nodes: int, pods: int, kubeconfig: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "inventory.testing.fake_kubernetes", "--nodes", str(nodes), "--pods", str(pods), "--context", "bench", "--kubeconfig", str(kubeconfig)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("serving"):
        process.kill()
        raise SystemExit(f"the fake API server did not start: {line!r}")
    print(f"fake API server (pid {process.pid}): {line.strip()}")
    return process


def raw_fetch_floor(config: KubernetesConfig) -> tuple[float, int, int]:
    """The connector's list calls, each page parsed and dropped: what any sync must at least pay."""
    api = KubernetesApi(config.name, config)
    pages = items = 0
    started = time.perf_counter()
    with cyclic_gc_paused():  # read as the connector reads, so that the ratio compares like with like
        api.get("/api/v1/namespaces/kube-system", "namespace kube-system")
        for resource_name in API_PATHS:
            for page in api.pages(resource_name):
                pages += 1
                items += len(page)
    elapsed = time.perf_counter() - started
    api.close()
    return elapsed, pages, items


def create_database(admin_url: str) -> tuple[str, str]:
    name = f"inventory_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods", type=int, default=15_000)
    parser.add_argument("--postgres", default=os.environ.get("INVENTORY_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        fake = start_fake(args.nodes, args.pods, kubeconfig)
        db_name, url = create_database(args.postgres)
        try:
            started = time.perf_counter()
            import kubernetes.client  # noqa: F401 - paid once per process; charged to neither side

            print(f"import kubernetes: {time.perf_counter() - started:.2f} s (once per process, excluded below)")
            # The rate limit is lifted: the benchmark measures cost, not the politeness budget.
            config = KubernetesConfig(name="bench", kubeconfig=kubeconfig, qps=10_000, burst=10_000)
            db = open_database(url, migrate=True)

            floor, pages, items = raw_fetch_floor(config)
            print(f"raw fetch floor:   {floor:6.2f} s  ({pages} pages, {items} objects, page size {config.page_size})")

            started = time.perf_counter()
            snapshot = KubernetesConnector(config).collect()
            collect_only = time.perf_counter() - started
            print(f"collect only:      {collect_only:6.2f} s  ({snapshot.object_count} records, complete={snapshot.complete})")
            del snapshot

            started = time.perf_counter()
            first = sync_source(db, KubernetesConnector(config))
            full = time.perf_counter() - started
            assert first.ok and first.result is not None, first.error
            print(f"full sync:         {full:6.2f} s  (created {first.result.created}, {first.result.statements} statements; "
                  f"~{full - collect_only:.2f} s of it reconcile + PostgreSQL writes)")

            started = time.perf_counter()
            again = sync_source(db, KubernetesConnector(config))
            resync = time.perf_counter() - started
            assert again.ok and again.result is not None, again.error
            print(f"no-change resync:  {resync:6.2f} s  (unchanged {again.result.unchanged}, changed {again.result.changed})")

            with db.session() as session:
                hosts = session.scalar(select(func.count()).select_from(HostRow))
                workloads = session.scalar(select(func.count()).select_from(WorkloadRow))
                linked = session.scalar(select(func.count()).select_from(WorkloadRow).where(WorkloadRow.kind == "pod", WorkloadRow.host_id.is_not(None)))
                members = session.scalar(select(func.count()).select_from(ServiceMember))
            print(f"stored: {hosts} hosts, {workloads} workloads ({linked} pods linked to their node), {members} service memberships")
            db.dispose()

            ratio = full / floor
            rss = peak_rss_mb()
            print()
            print(f"full sync / raw fetch floor = {ratio:.2f}x  (goal <= {GOAL_RATIO:g}x: {'met' if ratio <= GOAL_RATIO else 'NOT met'})")
            print(f"collect only / floor        = {collect_only / floor:.2f}x  (the connector's own share: fetch + convert)")
            print(f"no-change resync / floor    = {resync / floor:.2f}x")
            print(f"peak RSS = {rss:.0f} MB  (goal < {GOAL_RSS_MB} MB: {'met' if rss < GOAL_RSS_MB else 'NOT met'})")
        finally:
            fake.terminate()
            fake.wait(timeout=10)
            drop_database(args.postgres, db_name)


if __name__ == "__main__":
    main()
