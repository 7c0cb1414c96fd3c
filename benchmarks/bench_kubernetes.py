"""Kubernetes connector at scale: a 500-node, 15,000-pod fake cluster synced into PostgreSQL.

    .venv/bin/python benchmarks/bench_kubernetes.py [--nodes 500] [--pods 15000] [--postgres URL]

The fake API server runs in its own process (as a real API server would), so
that its work is not charged to the sync. It serves the realistic profile
(``connectors.kubernetes.fake.realistic``): a real cluster's kind counts
(~1,300 StatefulSets and Jobs, ~650 CronJobs and Ingresses, ~6,600 ReplicaSets,
most at zero) and object weights (managedFields on every object, kubectl's
last-applied-configuration on controllers). Printed, all measured in this run:

- two fetch floors, each in a process of its own, timed from the first request
  to the last answer: the connector's list calls (same paths, page size and
  continue tokens, same bearer token) fetched with plain ``requests`` and parsed
  with ``json`` (what a simple script pays), and the fastest fetch we have
  (urllib3 and orjson, cyclic GC paused): each page parsed and thrown away;
- full sync: collect + reconcile into an empty PostgreSQL database, and its
  ratio to each floor (goal: within 2x of the fastest);
- no-change resync: the same cluster again (every object unchanged);
- peak RSS of this process (goal: under 300 MB);
- the write floor: the rows the first sync wrote, copied out of its database as
  COPY text and copied bare into a fresh one, so PostgreSQL's own cost of taking
  them, with no encoding on our side;
- CPU seconds of the three processes (this one, the API server, PostgreSQL)
  during the full sync: on 2 cores their sum over 2 is what the full sync could
  take at best, were the three perfectly overlapped.

Each round measures all four back to back; the figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.kubernetes.api import API_PATHS  # noqa: E402
from connectors.kubernetes.config import KubernetesConfig  # noqa: E402
from connectors.kubernetes.connector import KubernetesConnector  # noqa: E402
from inventory.storage.database import open_database  # noqa: E402
from inventory.storage.models import HostRow, ServiceMember, WorkloadRow  # noqa: E402
from inventory.sync import sync_source  # noqa: E402
from inventory.testing.scratch_postgres import DEFAULT_ADMIN_URL, ScratchDatabase, libpq_conninfo  # noqa: E402

GOAL_RATIO = 2.0
GOAL_RSS_MB = 300


WRITTEN_TABLES = ("hosts", "workloads", "services", "service_members", "changes")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of processes other than this one, from /proc (gone processes count 0)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on this machine: the backends a sync talks to come and go."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_floor(synced_url: str, admin_url: str) -> tuple[float, int]:
    """The rows a first sync wrote, copied bare (pre-made COPY text) into a fresh, migrated database."""
    import psycopg

    dumps: dict[str, bytes] = {}
    with psycopg.connect(libpq_conninfo(synced_url)) as conn, conn.cursor() as cursor:
        for table in WRITTEN_TABLES:
            with cursor.copy(f"COPY {table} TO STDOUT") as copy:
                dumps[table] = b"".join(bytes(chunk) for chunk in copy)
    rows = sum(dump.count(b"\n") for dump in dumps.values())
    with ScratchDatabase(admin_url) as scratch:
        open_database(scratch.url, migrate=True).dispose()
        with psycopg.connect(libpq_conninfo(scratch.url)) as conn, conn.cursor() as cursor:
            started = time.perf_counter()
            for table in WRITTEN_TABLES:
                with cursor.copy(f"COPY {table} FROM STDIN") as copy:
                    copy.write(dumps[table])
            conn.commit()
            elapsed = time.perf_counter() - started
    return elapsed, rows


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def start_fake(nodes: int, pods: int, kubeconfig: Path) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "connectors.kubernetes.fake.server",
        "--nodes",
        str(nodes),
        "--pods",
        str(pods),
        "--profile",
        "realistic",
    ]
    process = subprocess.Popen(
        [*command, "--context", "bench", "--kubeconfig", str(kubeconfig)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("serving"):
        process.kill()
        raise SystemExit(f"the fake API server did not start: {line!r}")
    print(f"fake API server (pid {process.pid}): {line.strip()}")
    return process


# The floor child reads {"client", "server", "token", "paths", "page_size"} on stdin, lists every path page by
# page (limit + continue, as the connector does), and prints "<seconds> <CPU seconds> <pages> <items>".
_FLOOR_CHILD = """
import gc, json, sys, time
from urllib.parse import urlencode
job = json.load(sys.stdin)
headers = {"Authorization": "Bearer " + job["token"], "Accept": "application/json"}
if job["client"] == "requests + json":
    import requests
    session = requests.Session()
    session.trust_env = False
    def get(url):
        response = session.get(url, headers=headers)
        response.raise_for_status()
        return json.loads(response.content)
else:
    import orjson, urllib3
    pool = urllib3.PoolManager(maxsize=1)
    gc.disable()  # parsed JSON holds no cycles: the connector pauses the collector the same way
    def get(url):
        response = pool.request("GET", url, headers=headers)
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status} for {url}")
        return orjson.loads(response.data)
pages = items = 0
started, cpu_started = time.perf_counter(), time.process_time()
for path, is_list in job["paths"]:
    token = None
    while True:
        query = {"limit": job["page_size"], **({"continue": token} if token else {})} if is_list else {}
        document = get(job["server"] + path + ("?" + urlencode(query) if query else ""))
        if not is_list:
            break
        pages += 1
        items += len(document["items"])
        token = document["metadata"].get("continue")
        if not token:
            break
print(time.perf_counter() - started, time.process_time() - cpu_started, pages, items)
"""

FLOORS = ("requests + json", "urllib3 + orjson")


def fetch_floor(client: str, kubeconfig: Path, page_size: int) -> tuple[float, float, int, int]:
    """The connector's requests (kube-system, then every list it reads) fetched bare in a process of its own."""
    document = yaml.safe_load(kubeconfig.read_text())
    job = {
        "client": client,
        "server": document["clusters"][0]["cluster"]["server"],
        "token": document["users"][0]["user"]["token"],
        "paths": [("/api/v1/namespaces/kube-system", False)]
        + [(f"{prefix}/{resource}", True) for resource, (prefix, _namespaced) in API_PATHS.items()],
        "page_size": page_size,
    }
    done = subprocess.run(
        [sys.executable, "-c", _FLOOR_CHILD],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    seconds, cpu, pages, items = done.stdout.split()
    return float(seconds), float(cpu), int(pages), int(items)


def one_round(config: KubernetesConfig, admin_url: str, fake_pid: int, verbose: bool) -> dict[str, float]:
    """Both floors, collect only, full sync into a fresh database, and a no-change resync, measured back to back."""
    times: dict[str, float] = {}
    assert config.kubeconfig is not None
    for client in FLOORS:
        times[client], times[f"cpu {client}"], pages, items = fetch_floor(client, config.kubeconfig, config.page_size)

    started = time.perf_counter()
    snapshot = KubernetesConnector(config).collect()
    times["collect"] = time.perf_counter() - started
    records, complete = snapshot.object_count, snapshot.complete
    del snapshot

    with ScratchDatabase(admin_url) as scratch:
        db = open_database(scratch.url, migrate=True)
        servers = postgres_pids()
        cpu_before = (self_cpu(), cpu_seconds([fake_pid]), cpu_seconds(servers))
        started = time.perf_counter()
        first = sync_source(db, KubernetesConnector(config))
        times["full"] = time.perf_counter() - started
        servers += [pid for pid in postgres_pids() if pid not in servers]
        times["cpu ours"] = self_cpu() - cpu_before[0]
        times["cpu api"] = cpu_seconds([fake_pid]) - cpu_before[1]
        times["cpu pg"] = cpu_seconds(servers) - cpu_before[2]
        assert first.ok and first.result is not None, first.error
        times["write floor"], written = write_floor(scratch.url, admin_url)

        started = time.perf_counter()
        again = sync_source(db, KubernetesConnector(config))
        times["resync"] = time.perf_counter() - started
        assert again.ok and again.result is not None and again.result.changed == 0, again.error

        if verbose:
            with db.session() as session:
                hosts = session.scalar(select(func.count()).select_from(HostRow))
                workloads = session.scalar(select(func.count()).select_from(WorkloadRow))
                linked = session.scalar(
                    select(func.count())
                    .select_from(WorkloadRow)
                    .where(WorkloadRow.kind == "pod", WorkloadRow.host_id.is_not(None))
                )
                members = session.scalar(select(func.count()).select_from(ServiceMember))
            print(
                f"{pages} pages, {items} API objects -> {records} records (complete={complete}), "
                f"{first.result.statements} statements on the first sync"
            )
            print(f"the first sync wrote {written} rows to {', '.join(WRITTEN_TABLES)}")
            print(
                f"stored: {hosts} hosts, {workloads} workloads ({linked} pods linked to their node), "
                f"{members} service memberships; "
                f"resync: {again.result.unchanged} unchanged, {again.result.changed} changed"
            )
        db.dispose()
    print("round: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods", type=int, default=15_000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="figures are the median over rounds (the machine may be shared)"
    )
    parser.add_argument("--postgres", default=os.environ.get("INVENTORY_TEST_POSTGRES", DEFAULT_ADMIN_URL))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        fake = start_fake(args.nodes, args.pods, kubeconfig)
        try:
            started = time.perf_counter()
            import kubernetes.client  # noqa: F401 - paid once per process; charged to neither side

            print(f"import kubernetes: {time.perf_counter() - started:.2f} s (once per process, excluded below)")
            # The rate limit is lifted: the benchmark measures cost, not the politeness budget.
            config = KubernetesConfig(name="bench", kubeconfig=kubeconfig, qps=10_000, burst=10_000)
            rounds = [one_round(config, args.postgres, fake.pid, verbose=index == 0) for index in range(args.rounds)]
        finally:
            fake.terminate()
            fake.wait(timeout=10)

    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    plain, floor = median["requests + json"], median["urllib3 + orjson"]
    rss = peak_rss_mb()
    print()
    print(f"median of {len(rounds)} rounds (page size {config.page_size}, PostgreSQL):")
    print(f"  fetch floor, requests + json    {plain:6.2f} s   same list calls, own process, parsed and dropped")
    print(f"  fetch floor, urllib3 + orjson   {floor:6.2f} s   the same, the fastest fetch we have")
    print(f"  collect only                    {median['collect']:6.2f} s   fetch + convert to records")
    print(
        f"  full sync                       {median['full']:6.2f} s   collect + reconcile + PostgreSQL writes, "
        "empty database"
    )
    print(f"  no-change resync                {median['resync']:6.2f} s")

    # Ratios are taken within each round (its floors and its sync ran back to back, under the same load
    # from whatever else shares the machine), then the median over rounds.
    def ratio_of(numerator: str, denominator: str) -> float:
        return statistics.median(r[numerator] / r[denominator] for r in rounds)

    ratio = ratio_of("full", "urllib3 + orjson")
    print(f"full sync / requests + json floor   = {ratio_of('full', 'requests + json'):.2f}x")
    print(
        f"full sync / urllib3 + orjson floor  = {ratio:.2f}x  "
        f"(goal <= {GOAL_RATIO:g}x: {'met' if ratio <= GOAL_RATIO else 'NOT met'})"
    )
    collect_share = ratio_of("collect", "urllib3 + orjson")
    print(f"collect only / fastest floor        = {collect_share:.2f}x  (the connector's own share)")
    print(f"no-change resync / fastest floor    = {ratio_of('resync', 'urllib3 + orjson'):.2f}x")
    print(f"requests + json floor / fastest     = {ratio_of('requests + json', 'urllib3 + orjson'):.2f}x")
    # Wall times above depend on what else the machine runs; CPU seconds much less so.
    plain_cpu, floor_cpu = median["cpu requests + json"], median["cpu urllib3 + orjson"]
    print(
        f"CPU seconds: requests + json floor {plain_cpu:.2f}, urllib3 + orjson floor {floor_cpu:.2f}, "
        f"full sync's own process {median['cpu ours']:.2f} "
        f"(= {ratio_of('cpu ours', 'cpu urllib3 + orjson'):.2f}x the fastest's)"
    )
    print(f"peak RSS = {rss:.0f} MB  (goal < {GOAL_RSS_MB} MB: {'met' if rss < GOAL_RSS_MB else 'NOT met'})")
    write = median["write floor"]
    print()
    print("what the goal leaves room for:")
    print(
        f"  write floor        {write:6.2f} s   the first sync's rows, COPY text made beforehand, "
        "copied bare into a fresh database"
    )
    print(
        f"  fetch + write floors = {(floor + write) / floor:.2f}x the fastest fetch floor: a sync that fetched, "
        "then wrote, with no"
    )
    print(
        f"  conversion, diff or encoding at all, would already take {floor + write:.2f} s "
        f"of the {GOAL_RATIO * floor:.2f} s the goal allows"
    )
    cpu = {key: median[f"cpu {key}"] for key in ("ours", "api", "pg")}
    cores = os.cpu_count() or 1
    print(
        f"  CPU during the full sync: this process {cpu['ours']:.2f} s, API server {cpu['api']:.2f} s, "
        f"PostgreSQL {cpu['pg']:.2f} s;"
    )
    print(
        f"  on {cores} cores, even perfectly overlapped, that work takes >= {sum(cpu.values()) / cores:.2f} s "
        f"= {sum(cpu.values()) / cores / floor:.2f}x the fastest fetch floor, "
        f"and this process alone (one interpreter) >= {cpu['ours'] / floor:.2f}x"
    )


if __name__ == "__main__":
    main()
