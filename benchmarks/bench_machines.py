"""Machine links at scale: the whole graph relinked after a source's write, on PostgreSQL and SQLite.

A homelab-to-datacentre shape: N Proxmox VMs; each VM is a Kubernetes node (most by SMBIOS
uuid = systemUUID, a fifth by providerID only), every third one also a Docker engine (by
hostname + address), plus 10% hosts no other source sees. Prints, per engine and size, the
time ``relink_machines`` takes: the first link (empty table), a relink with nothing changed
(what every sync pays), and one after a source changed 1% of its hosts; and the links written.

    .venv/bin/python benchmarks/bench_machines.py [--vms 500,5000] [--engines postgresql,sqlite] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import delete, func, select

from inventory.connector import Connector, SourceConfig
from inventory.machine_links import relink_machines
from inventory.records import Host, Snapshot
from inventory.storage.database import Database, open_database
from inventory.storage.models import MachineLink
from inventory.sync import sync_source
from inventory.testing.scratch_postgres import ScratchDatabase

POSTGRES_ADMIN_URL = os.environ.get("INVENTORY_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


class FixedConnector(Connector):
    type_name = "bench"

    def __init__(self, name: str, snapshot: Snapshot) -> None:
        super().__init__(SourceConfig(type="bench", name=name))
        self.snapshot = snapshot

    def collect(self) -> Snapshot:
        return self.snapshot


def lab(vms: int, churn: int = 0) -> dict[str, Snapshot]:
    pve, k3s, docker = Snapshot(identity="pve"), Snapshot(identity="k3s"), Snapshot(identity="docker")
    for i in range(vms):
        smbios = str(uuid.UUID(int=i + 1))
        address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        pve.hosts.append(
            Host(
                kind="vm",
                external_id=f"lab/{i}",
                name=f"vm-{i}",
                machine_uuid=smbios,
                addresses=(address,),
                mac_addresses=(f"bc:24:11:{i // 65536:02x}:{i // 256 % 256:02x}:{i % 256:02x}",),
                attributes={"cluster": "lab", "vmid": i},
            )
        )
        by_provider = i % 5 == 0
        node_uuid = str(uuid.UUID(int=10**9 + i + churn * (i % 100 == 0))) if by_provider else smbios
        k3s.hosts.append(
            Host(
                kind="node",
                external_id=f"node-{i}",
                name=f"vm-{i}",
                machine_uuid=node_uuid,
                addresses=(address,),
                attributes={"provider_id": f"proxmox://lab/{i}"} if by_provider else {},
            )
        )
        if i % 3 == 0:
            docker.hosts.append(
                Host(kind="docker-engine", external_id=f"engine-{i}", name=f"vm-{i}", addresses=(address,))
            )
    for i in range(vms // 10):
        address = f"172.16.{i // 256}.{i % 256}"
        pve.hosts.append(Host(kind="lxc", external_id=f"lab/ct-{i}", name=f"ct-{i}", addresses=(address,)))
    return {"pve": pve, "k3s": k3s, "docker": docker}


def timed_relink(db: Database) -> tuple[float, int]:
    with db.write_session() as session:
        started = time.perf_counter()
        relink_machines(session)
        elapsed = time.perf_counter() - started
    with db.session() as session:
        links = session.execute(select(func.count()).select_from(MachineLink)).scalar_one()
    return elapsed, links


def run(url: str, vms: int, rounds: int) -> None:
    db = open_database(url, migrate=True)
    try:
        for name, snapshot in lab(vms).items():
            assert sync_source(db, FixedConnector(name, snapshot)).ok
        with db.write_session() as session:
            session.execute(delete(MachineLink))
        first, links = timed_relink(db)
        unchanged = statistics.median(timed_relink(db)[0] for _ in range(rounds))
        changed = []
        for r in range(1, rounds + 1):
            assert sync_source(db, FixedConnector("k3s", lab(vms, churn=r % 2)["k3s"])).ok  # 1% of nodes' uuids move
            changed.append(timed_relink(db)[0])
        hosts = sum(len(s.hosts) for s in lab(vms).values())
        engine = url.split(":", 1)[0].split("+")[0]
        print(
            f"{engine:10} {hosts:6} hosts {links:6} link rows  first {first * 1000:7.1f} ms  "
            f"unchanged {unchanged * 1000:7.1f} ms  1% changed {statistics.median(changed) * 1000:7.1f} ms"
        )
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", default="500,5000")
    parser.add_argument("--engines", default="postgresql,sqlite")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for vms in (int(v) for v in args.vms.split(",")):
        for engine in args.engines.split(","):
            if engine == "sqlite":
                with tempfile.TemporaryDirectory() as directory:
                    run(f"sqlite:///{directory}/bench.db", vms, args.rounds)
            else:
                with ScratchDatabase(POSTGRES_ADMIN_URL, prefix="inventory_bench") as scratch:
                    run(scratch.url, vms, args.rounds)


if __name__ == "__main__":
    main()
