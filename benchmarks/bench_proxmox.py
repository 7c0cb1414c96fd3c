"""Proxmox VE at scale: 8 nodes and 1,000 guests synced into PostgreSQL, against Ansible's inventory plugin.

    .venv/bin/python benchmarks/bench_proxmox.py [--nodes 8] [--guests 1000] [--latency-ms 0 10]
        [--ansible /tmp/ansible-venv/bin/ansible-inventory] [--postgres URL]

One loopback fake Proxmox VE API (connectors/proxmox/fake/server.py) serves both
sides. For each added latency (0 ms: the fake answers at once; 10 ms: closer to
a real pveproxy) it prints, measured in that same run:

- ours: ``inventory sync --once`` as a subprocess (process start to a complete,
  queryable inventory in a fresh PostgreSQL database), the API calls it made, and
  the in-process collect time;
- the raw fetch floor: exactly the URLs our collect() requested, replayed with plain
  ``requests`` and the same number of workers in a process of its own, nothing
  parsed or stored (what no requests-based client at this concurrency can beat),
  and the import floor (a new process importing sqlalchemy, psycopg, proxmoxer);
- Ansible: ``ansible-inventory --list`` with community.proxmox.proxmox and
  ``want_facts: true`` (one request at a time), its calls, and the ratio;
- completeness, object for object: which guests each side has, by vmid.

Figures, not pass/fail: the goals (>= 5x at 0 ms, >= 10x at 10 ms) are printed next to them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from connectors.proxmox.config import ProxmoxConfig  # noqa: E402
from connectors.proxmox.connector import ProxmoxConnector  # noqa: E402
from connectors.proxmox.fake.server import FakeProxmox, build_cluster  # noqa: E402
from inventory.storage.database import open_database  # noqa: E402
from inventory.storage.models import HostRow, WorkloadRow  # noqa: E402
from inventory.testing.scratch_postgres import DEFAULT_ADMIN_URL, ScratchDatabase  # noqa: E402

DEFAULT_POSTGRES = os.environ.get("INVENTORY_TEST_POSTGRES", DEFAULT_ADMIN_URL)
DEFAULT_ANSIBLE = "/tmp/ansible-venv/bin/ansible-inventory"
# The console script of the environment running the benchmark (a venv anywhere, not only .venv).
INVENTORY = Path(sys.executable).with_name("inventory")
GOALS = {0: 5.0, 10: 10.0}


def write_config(fake: FakeProxmox, workdir: Path, database_url: str | None = None) -> Path:
    """An inventory.yaml with the fake as the source ``pve`` (its token secret in a file beside it)."""
    secret = workdir / "pve-token"
    secret.write_text(fake.token_secret)
    source = {
        "type": "proxmox",
        "name": "pve",
        "url": fake.url,
        "token_id": fake.token_id,
        "token_secret_file": str(secret),
        "ca_file": str(fake.ca_file),
    }
    config = workdir / "inventory.yaml"
    database = {"database": {"url": database_url}} if database_url else {}
    config.write_text(json.dumps({**database, "sources": [source]}))
    return config


def run_ours(fake: FakeProxmox, workdir: Path, admin_url: str) -> dict[str, Any]:
    """``inventory sync --once`` in a subprocess into a fresh database; then count what landed."""
    config = write_config(fake, workdir)
    with ScratchDatabase(admin_url) as database:
        open_database(database.url, migrate=True).dispose()
        fake.reset_calls()
        started = time.perf_counter()
        done = subprocess.run(
            [str(INVENTORY), "-c", str(config),
             "--database-url", database.url, "sync", "--once"],
            capture_output=True, text=True, cwd=workdir, env={**os.environ, "INVENTORY_DATABASE_URL": ""},
        )  # fmt: skip
        seconds = time.perf_counter() - started
        calls = fake.total_calls
        if done.returncode != 0:
            raise SystemExit(f"inventory sync --once failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        db = open_database(database.url)
        with db.session() as session:
            vmids = set(session.scalars(select(WorkloadRow.external_id).where(WorkloadRow.removed_at.is_(None))))
            hosts = session.scalar(select(func.count()).select_from(HostRow).where(HostRow.removed_at.is_(None)))
            guest_hosts = session.execute(
                select(HostRow.external_id, HostRow.addresses).where(HostRow.kind.in_(["vm", "lxc"]))
            ).all()
        db.dispose()
        addressed = {int(external_id.rsplit("/", 1)[1]) for external_id, addresses in guest_hosts if addresses}
        return {
            "seconds": seconds,
            "calls": calls,
            "guests": {int(v.rsplit("/", 1)[1]) for v in vmids},
            "hosts": hosts,
            "addressed": addressed,
        }


def collect_in_process(fake: FakeProxmox, concurrency: int) -> dict[str, Any]:
    """collect() alone, no database; the fake shares this process (and its GIL) here."""
    config = ProxmoxConfig(
        name="pve",
        url=fake.url,
        token_id=fake.token_id,
        token_secret=fake.token_secret,
        ca_file=fake.ca_file,
        concurrency=concurrency,
    )
    connector = ProxmoxConnector(config)
    fake.reset_calls()
    fake.requested.clear()
    fake.recording = True
    started = time.perf_counter()
    snapshot = connector.collect()
    seconds = time.perf_counter() - started
    fake.recording = False
    return {"seconds": seconds, "calls": fake.total_calls, "complete": snapshot.complete, "paths": list(fake.requested)}


_FLOOR_CHILD = """
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import requests
job = json.load(sys.stdin)
session = requests.Session()
session.trust_env = False  # a CA bundle named in the environment must not override ours
session.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=job["workers"]))
session.headers["Authorization"] = job["authorization"]
session.verify = job["ca_file"]
first, rest = job["urls"][:2], job["urls"][2:]
started = time.perf_counter()
for url in first:
    session.get(url).content
with ThreadPoolExecutor(max_workers=job["workers"]) as pool:
    list(pool.map(lambda url: session.get(url).content, rest))
print(time.perf_counter() - started)
"""


def raw_fetch_floor(fake: FakeProxmox, paths: list[str], workers: int) -> dict[str, Any]:
    """Exactly the paths our collect() requested, fetched bare with plain ``requests`` in a process of
    its own (as ours and Ansible's run; sharing this process would charge it the fake's GIL): the two
    cluster-wide lists one after the other, then the rest on ``workers`` threads. Nothing parsed.
    Timed inside that process, from the first request to the last answer: no start-up, no imports."""
    job = {
        "urls": [f"{fake.url}/api2/json{path}" for path in paths],
        "workers": workers,
        "authorization": f"PVEAPIToken={fake.token_id}={fake.token_secret}",
        "ca_file": str(fake.ca_file),
    }
    fake.reset_calls()
    done = subprocess.run(
        [sys.executable, "-c", _FLOOR_CHILD], input=json.dumps(job), capture_output=True, text=True, check=True
    )
    return {"seconds": float(done.stdout), "calls": fake.total_calls}


def import_floor() -> float:
    """A new process that imports the packages a Proxmox sync into PostgreSQL cannot do without, and exits."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sqlalchemy, psycopg, proxmoxer, requests"], check=True)
    return time.perf_counter() - started


def run_ansible(fake: FakeProxmox, workdir: Path, ansible: str) -> dict[str, Any]:
    user, _, token_name = fake.token_id.partition("!")
    inventory = workdir / "bench.proxmox.yml"
    inventory.write_text(
        json.dumps(
            {
                "plugin": "community.proxmox.proxmox",
                "url": fake.url,
                "user": user,
                "token_id": token_name,
                "token_secret": fake.token_secret,
                "validate_certs": True,
                "want_facts": True,
            }
        )
    )
    # The plugin verifies TLS with requests' default bundle: point it at the fake's CA, verification stays on.
    env = {
        **os.environ,
        "REQUESTS_CA_BUNDLE": str(fake.ca_file),
        "ANSIBLE_INVENTORY_ENABLED": "community.proxmox.proxmox",
        "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
    }  # a plugin that cannot run must not pass for an empty inventory
    fake.reset_calls()
    started = time.perf_counter()
    done = subprocess.run(
        [ansible, "-i", str(inventory), "--list"], capture_output=True, text=True, env=env, cwd=workdir
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"ansible-inventory failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    listing = json.loads(done.stdout)
    hostvars = listing.get("_meta", {}).get("hostvars", {})
    guests = {int(v["proxmox_vmid"]) for v in hostvars.values() if "proxmox_vmid" in v}
    addressed = {
        int(v["proxmox_vmid"])
        for v in hostvars.values()
        if "proxmox_vmid" in v
        and (any(i.get("inet") or i.get("inet6") for i in v.get("proxmox_lxc_interfaces", []) if i.get("name") != "lo")
             or any(i.get("ip-addresses") for i in v.get("proxmox_agent_interfaces", []) if i.get("name") != "lo"))
    }  # fmt: skip
    return {
        "seconds": seconds,
        "calls": fake.total_calls,
        "guests": guests,
        "hosts": len(hostvars),
        "addressed": addressed,
    }


def describe_missing(fake: FakeProxmox, missing: set[int]) -> str:
    if not missing:
        return "none"
    guests = {g.vmid: g for g in fake.cluster.guests}
    names: dict[str, int] = {}
    for g in fake.cluster.guests:
        names[g.name] = names.get(g.name, 0) + 1
    templates = sum(1 for v in missing if guests[v].template)
    duplicates = sum(1 for v in missing if not guests[v].template and names[guests[v].name] > 1)
    return (
        f"{len(missing)} ({templates} templates, {duplicates} sharing a name with another guest, "
        f"{len(missing) - templates - duplicates} other)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--guests", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0, 10])
    parser.add_argument("--ansible", default=DEFAULT_ANSIBLE, help="ansible-inventory with community.proxmox installed")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="admin URL; a scratch database is made per run")
    args = parser.parse_args()

    ansible = args.ansible if Path(args.ansible).exists() else shutil.which("ansible-inventory")
    cluster = build_cluster(nodes=args.nodes, guests=args.guests)
    every = {g.vmid for g in cluster.guests}
    templates = sum(g.template for g in cluster.guests)
    print(
        f"fake cluster: {args.nodes} nodes, {len(every)} guests ({templates} templates, "
        f"{len(every) - len({g.name for g in cluster.guests})} names used twice); "
        f"PostgreSQL at {make_url(args.postgres).render_as_string()}"
    )
    if not ansible:
        print(
            "ansible-inventory: not found (pip install ansible requests into /tmp/ansible-venv); printing our figures "
            "only"
        )
    with FakeProxmox(cluster) as fake, tempfile.TemporaryDirectory(prefix="bench-pve-") as tmp:
        workdir = Path(tmp)
        with FakeProxmox(build_cluster(nodes=1, guests=0, pools=0)) as empty:
            # What each side pays before its first guest: process start, imports, login, database.
            fixed = (
                f"fixed cost (1 node, 0 guests, 0 ms): ours {run_ours(empty, workdir, args.postgres)['seconds']:.2f} s"
            )
            if ansible:
                fixed += f", ansible {run_ansible(empty, workdir, ansible)['seconds']:.2f} s"
            print(fixed)
        imports = statistics.median(import_floor() for _ in range(3))  # the same whatever the latency
        print(f"import floor: sqlalchemy, psycopg, proxmoxer in a new process, nothing else: {imports:.2f} s")
        for latency_ms in args.latency_ms:
            fake.faults.latency = latency_ms / 1000
            print(f"\n== fake adds {latency_ms:g} ms to every answer ==")
            ours = run_ours(fake, workdir, args.postgres)
            workers = ProxmoxConfig.model_fields["concurrency"].default
            inner = {c: collect_in_process(fake, c) for c in sorted({8, workers})}
            floor = raw_fetch_floor(fake, inner[workers]["paths"], workers=workers)
            print(
                f"ours    inventory sync --once -> PostgreSQL: {ours['seconds']:7.2f} s  "
                f"{ours['calls']:5d} API calls  {len(ours['guests'])} guests, {ours['hosts']} hosts"
            )
            for concurrency, figures in inner.items():
                print(
                    f"        collect() alone, {concurrency:2d} in flight:      {figures['seconds']:7.2f} s  "
                    f"{figures['calls']:5d} API calls  complete={figures['complete']}"
                )
            print(
                f"floor   same URLs, bare requests, {workers:2d} workers:{floor['seconds']:6.2f} s  "
                f"{floor['calls']:5d} API calls  (own process, fetch only)"
            )
            if not ansible:
                continue
            try:
                theirs = run_ansible(fake, workdir, ansible)
            except RuntimeError as exc:
                print(f"ansible {exc}")
                continue
            ratio = theirs["seconds"] / ours["seconds"]
            goal = GOALS.get(int(latency_ms))
            verdict = f"(goal >= {goal:g}x: {'met' if ratio >= goal else 'NOT met'})" if goal else ""
            print(
                f"ansible community.proxmox, want_facts:  {theirs['seconds']:7.2f} s  "
                f"{theirs['calls']:5d} API calls  {len(theirs['guests'])} guests, {theirs['hosts']} hosts"
            )
            print(f"ratio   ansible / ours = {ratio:.1f}x {verdict}")
            if goal:
                print(
                    f"        the goal needs ours in <= {theirs['seconds'] / goal:.2f} s; the fetch floor plus the "
                    "import floor "
                    f"alone take {floor['seconds'] + imports:.2f} s (ansible / those floors = "
                    f"{theirs['seconds'] / (floor['seconds'] + imports):.1f}x)"
                )
            print(
                f"missing ours: {describe_missing(fake, every - ours['guests'])}; ansible: "
                f"{describe_missing(fake, every - theirs['guests'])}"
            )
            print(
                f"addresses: guests with an address, ours {len(ours['addressed'])}, "
                f"ansible {len(theirs['addressed'])}; only ours {len(ours['addressed'] - theirs['addressed'])}, "
                f"only ansible {len(theirs['addressed'] - ours['addressed'])}"
            )


if __name__ == "__main__":
    main()
