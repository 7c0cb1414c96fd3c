"""An Ansible inventory of Proxmox VE: `inventory ansible` against the community.proxmox inventory plugin.

    .venv/bin/python benchmarks/bench_ansible.py [--nodes 8] [--guests 1000] [--latency-ms 0 10]
        [--ansible /tmp/ansible-venv/bin/ansible-inventory] [--postgres URL]

One loopback fake Proxmox VE API (connectors/proxmox/fake/server.py) serves both
sides; the same ``ansible-inventory --list`` reads both. For each added latency it prints:

- ours, warm: ``ansible-inventory -i <the README's wrapper> --list`` over a database the
  sync loop keeps current (what an operator runs: no API call at all);
- ours, cold: ``inventory sync --once`` into a fresh PostgreSQL database, then the same;
- community.proxmox with ``want_facts: true`` (addresses need it);
- hosts found: Ansible hosts, guests among them (by vmid), guests with an ``ansible_host``,
  and the guests each side lost (templates, names shared by two guests).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))

from bench_proxmox import (  # noqa: E402
    DEFAULT_ANSIBLE,
    DEFAULT_POSTGRES,
    INVENTORY,
    describe_missing,
    run_ansible,
    write_config,
)

from connectors.proxmox.fake.server import FakeProxmox, build_cluster  # noqa: E402
from inventory.storage.database import open_database  # noqa: E402
from inventory.testing.scratch_postgres import ScratchDatabase  # noqa: E402


def _wrapper(workdir: Path, config: Path) -> Path:
    """The README's two-line wrapper."""
    script = workdir / "inventory-ansible.sh"
    script.write_text(f'#!/bin/sh\nexec "{INVENTORY}" -c "{config}" ansible "$@"\n')
    script.chmod(0o755)
    return script


def _listing(ansible: str, inventory: Path, workdir: Path) -> tuple[float, dict[str, Any]]:
    env = {
        **os.environ,
        "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        "ANSIBLE_INVENTORY_ENABLED": "script",
    }
    env.pop("INVENTORY_DATABASE_URL", None)
    started = time.perf_counter()
    done = subprocess.run(
        [ansible, "-i", str(inventory), "--list"], capture_output=True, text=True, env=env, cwd=workdir
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"ansible-inventory over our wrapper failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return seconds, json.loads(done.stdout)


def run_ours(fake: FakeProxmox, workdir: Path, admin_url: str, ansible: str) -> dict[str, Any]:
    with ScratchDatabase(admin_url) as database:
        open_database(database.url, migrate=True).dispose()
        config = write_config(fake, workdir, database.url)
        fake.reset_calls()
        started = time.perf_counter()
        sync = subprocess.run(
            [str(INVENTORY), "-c", str(config), "sync", "--once"], capture_output=True, text=True, cwd=workdir
        )
        sync_seconds = time.perf_counter() - started
        if sync.returncode != 0:
            raise SystemExit(f"inventory sync --once failed ({sync.returncode}):\n{sync.stderr}")
        calls = fake.total_calls
        wrapper = _wrapper(workdir, config)
        cold_list, _ = _listing(ansible, wrapper, workdir)
        warm = [_listing(ansible, wrapper, workdir) for _ in range(3)]
        warm_seconds = min(seconds for seconds, _ in warm)
        listing = warm[0][1]
    hostvars = listing["_meta"]["hostvars"]
    guests = {int(v["inv_attributes"]["vmid"]) for v in hostvars.values() if v["inv_kind"] in ("vm", "lxc")}
    addressed = {
        int(v["inv_attributes"]["vmid"])
        for v in hostvars.values()
        if v["inv_kind"] in ("vm", "lxc") and v.get("inv_addresses")
    }
    return {
        "warm": warm_seconds,
        "cold": sync_seconds + cold_list,
        "sync": sync_seconds,
        "calls": calls,
        "hosts": len(hostvars),
        "guests": guests,
        "addressed": addressed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--guests", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0, 10])
    parser.add_argument("--ansible", default=DEFAULT_ANSIBLE, help="ansible-inventory with community.proxmox installed")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="admin URL; a scratch database is made per run")
    args = parser.parse_args()

    ansible = args.ansible if Path(args.ansible).exists() else shutil.which("ansible-inventory")
    if not ansible:
        raise SystemExit("ansible-inventory not found (pip install ansible requests into /tmp/ansible-venv)")
    cluster = build_cluster(nodes=args.nodes, guests=args.guests)
    every = {g.vmid for g in cluster.guests}
    templates = sum(g.template for g in cluster.guests)
    shared = len(every) - len({g.name for g in cluster.guests})
    print(f"fake cluster: {args.nodes} nodes, {len(every)} guests ({templates} templates, {shared} names used twice)")
    print(f"ansible-inventory: {ansible}")
    with FakeProxmox(cluster) as fake, tempfile.TemporaryDirectory(prefix="bench-ansible-") as tmp:
        workdir = Path(tmp)
        for latency_ms in args.latency_ms:
            fake.faults.latency = latency_ms / 1000
            print(f"\n== fake adds {latency_ms:g} ms to every answer ==")
            ours = run_ours(fake, workdir, args.postgres, ansible)
            try:
                theirs = run_ansible(fake, workdir, ansible)
            except RuntimeError as exc:
                print(f"ours    warm {ours['warm']:.2f} s; community.proxmox: {exc}")
                continue
            print(f"{'':42s}{'seconds':>8s}  {'API calls':>9s}  {'hosts':>5s}  {'guests':>6s}  {'with address':>12s}")
            for label, seconds, calls, side in (
                ("ours: ansible-inventory, database current", ours["warm"], 0, ours),
                ("ours: sync --once + ansible-inventory", ours["cold"], ours["calls"], ours),
                ("community.proxmox, want_facts", theirs["seconds"], theirs["calls"], theirs),
            ):
                counts = f"{side['hosts']:5d}  {len(side['guests']):6d}  {len(side['addressed']):12d}"
                print(f"{label:42s}{seconds:8.2f}  {calls:9d}  {counts}")
            warm, cold = theirs["seconds"] / ours["warm"], theirs["seconds"] / ours["cold"]
            print(f"ratio   community.proxmox / ours: {warm:.1f}x warm, {cold:.1f}x cold")
            lost_ours = describe_missing(fake, every - ours["guests"])
            lost_theirs = describe_missing(fake, every - theirs["guests"])
            print(f"missing guests: ours {lost_ours}; community.proxmox {lost_theirs}")


if __name__ == "__main__":
    main()
