"""A deadline is a deadline: how long `sync --once` takes to exit past it, and whether the loop's request rate holds.

    .venv/bin/python benchmarks/bench_deadline.py [--guests 1000] [--latency 2] [--deadline 20]
        [--loop-seconds 60]

1. Proxmox VE: a fake cluster of ``--guests`` guests answering every call after ``--latency``
   seconds; ``inventory sync --once`` with ``deadline: --deadline`` runs as a real process. Printed:
   the process's wall time against the deadline, the calls the fake answered by the time it
   exited and one second later (equal: nothing was left running). Before the cutoff, the
   abandoned pool made every remaining call and the process exited at 214 s (1,000 guests, 2 s,
   20 s deadline).
2. Kubernetes: the sync loop (interval 12 s, deadline 6 s) against a fake API server answering
   every request after 2 s, for ``--loop-seconds``. Printed: requests per 10 s window and the
   most requests in flight at once. Before, abandoned collections piled up beside the new ones
   and the rate climbed from 3 to 15 per 10 s; now it stays flat and one request is in flight.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import FakeKubernetes, write_kubeconfig
from connectors.proxmox.fake.server import FakeProxmox, build_cluster
from inventory.config import build_config
from inventory.connector import ConnectorRegistry
from inventory.loop import SyncLoop
from inventory.storage.database import open_database


def proxmox_sync_once(workdir: Path, guests: int, latency: float, deadline: float) -> None:
    with FakeProxmox(build_cluster(nodes=max(3, guests // 100), guests=guests, name="slow")) as fake:
        fake.faults.latency = latency
        config = workdir / "pve.yaml"
        source = {
            "type": "proxmox", "name": "pve", "url": fake.url, "token_id": fake.token_id,
            "token_secret": fake.token_secret, "ca_file": str(fake.ca_file), "deadline": f"{deadline:g}s",
        }  # fmt: skip
        config.write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{workdir / 'pve.db'}"}, "sources": [source]}))
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "inventory", "-c", str(config), "sync", "--once"], capture_output=True, text=True
        )
        took = time.monotonic() - started
        at_exit = fake.total_calls
        time.sleep(1.0)
        later = fake.total_calls
    print(f"Proxmox VE, {guests} guests, {latency:g} s per call, deadline {deadline:g} s: `sync --once`")
    print(f"  exit code {done.returncode}; wall {took:.1f} s = deadline + {took - deadline:.1f} s (start-up included)")
    print(f"  calls answered by exit: {at_exit}; one second later: {later} (difference {later - at_exit})")


def kubernetes_loop(workdir: Path, seconds: float) -> None:
    db = open_database(f"sqlite:///{workdir / 'kube.db'}", migrate=True)
    registry = ConnectorRegistry.discover()
    with FakeKubernetes(ClusterSpec(name="slow", nodes=3, pods=60)) as api:
        api.latency = 2.0
        kubeconfig = write_kubeconfig(workdir / "kube.yaml", {"slow": api})
        config = build_config(
            {
                "sync": {"interval": "12s", "jitter": 0},
                "sources": [{"type": "kubernetes", "name": "kube", "kubeconfig": str(kubeconfig), "deadline": "6s"}],
            },
            registry=registry,
        )
        loop = SyncLoop(db, config, registry, coordinate=False)
        windows: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            last = 0
            while not stop.wait(10):
                now = len(api.requests)
                windows.append(now - last)
                last = now

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        loop.run(until=time.monotonic() + seconds)
        stop.set()
        most = api.most_in_flight
    db.dispose()
    print(f"Kubernetes loop, 2 s per request, deadline 6 s, interval 12 s, {seconds:g} s:")
    print(f"  requests per 10 s window: {windows}")
    print(f"  most requests in flight at once: {most}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--deadline", type=float, default=20.0)
    parser.add_argument("--loop-seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        proxmox_sync_once(Path(workdir), args.guests, args.latency, args.deadline)
        kubernetes_loop(Path(workdir), args.loop_seconds)


if __name__ == "__main__":
    main()
