"""Sources one after another vs concurrently: six sources (two Kubernetes, two Proxmox VE, two Docker fakes)
on loopback, each behind a proxy that adds latency to every request, synced into SQLite.

    .venv/bin/python benchmarks/bench_sources.py [--latency 0.05] [--runs 3] [--concurrency 6]

Printed (medians of ``--runs``): the wall time of ``sync_all`` with ``sync.concurrency: 1``
(one source after another) and with ``--concurrency``, each source's own collect+write time,
and the ratio. Concurrent should take about as long as the slowest source.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.docker.fake import FakeDocker, generate_containers
from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import FakeKubernetes, write_kubeconfig
from connectors.proxmox.fake.server import FakeProxmox, build_cluster
from inventory.config import build_config
from inventory.connector import ConnectorRegistry
from inventory.storage.database import open_database
from inventory.sync import sync_all


class LatencyProxy:
    """A TCP relay on 127.0.0.1 that holds every chunk a client sends for ``latency`` seconds (TLS passes through)."""

    def __init__(self, target_port: int, latency: float) -> None:
        self.target_port, self.latency = target_port, latency
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, self.latency), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, 0.0), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, latency: float) -> None:
        try:
            while chunk := source.recv(65536):
                if latency:
                    time.sleep(latency)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self._listener.close()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def sources(stack: ExitStack, workdir: Path, latency: float) -> list[dict[str, Any]]:
    def proxied(url: str) -> int:
        proxy = LatencyProxy(_port(url), latency)
        stack.callback(proxy.close)
        return proxy.port

    found: list[dict[str, Any]] = []
    for i in range(2):
        api = stack.enter_context(FakeKubernetes(ClusterSpec(name=f"k{i}", nodes=5, pods=150, minimal_objects=True)))
        port = proxied(api.url)
        kubeconfig = write_kubeconfig(workdir / f"k{i}.yaml", {f"k{i}": api})
        kubeconfig.write_text(kubeconfig.read_text().replace(api.url, f"http://127.0.0.1:{port}"))
        found.append({"type": "kubernetes", "name": f"kube{i}", "kubeconfig": str(kubeconfig)})
    for i in range(2):
        pve = stack.enter_context(FakeProxmox(build_cluster(nodes=3, guests=30, name=f"p{i}")))
        found.append({
            "type": "proxmox", "name": f"pve{i}", "url": f"https://127.0.0.1:{proxied(pve.url)}",
            "token_id": pve.token_id, "token_secret": pve.token_secret, "ca_file": str(pve.ca_file),
        })  # fmt: skip
    for i in range(2):
        engine = stack.enter_context(FakeDocker(generate_containers(60, seed=f"d{i}")))
        found.append({"type": "docker", "name": f"docker{i}", "url": f"tcp://127.0.0.1:{proxied(engine.url)}"})
    return found


def timed(url: str, raw: dict[str, Any], registry: ConnectorRegistry) -> tuple[float, dict[str, float]]:
    db = open_database(url, migrate=True)
    try:
        config = build_config(raw, registry=registry)
        started = time.perf_counter()
        outcomes = sync_all(db, config, registry)
        wall = time.perf_counter() - started
    finally:
        db.dispose()
    failed = [o.describe() + f" {o.error}" for o in outcomes if not o.ok]
    if failed:
        raise SystemExit("a source did not succeed: " + "; ".join(failed))
    return wall, {o.source: o.duration for o in outcomes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every request chunk")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=6)
    args = parser.parse_args()
    registry = ConnectorRegistry.discover()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as workdir:
        configured = sources(stack, Path(workdir), args.latency)
        results: dict[int, list[float]] = {1: [], args.concurrency: []}
        per_source: dict[str, list[float]] = {}
        for run in range(args.runs):
            for concurrency in results:
                url = f"sqlite:///{workdir}/run{run}-c{concurrency}.db"
                raw = {"sync": {"concurrency": concurrency}, "sources": configured}
                wall, durations = timed(url, raw, registry)
                results[concurrency].append(wall)
                if concurrency == 1:
                    for name, seconds in durations.items():
                        per_source.setdefault(name, []).append(seconds)
    sequential = statistics.median(results[1])
    concurrent = statistics.median(results[args.concurrency])
    slowest = max(statistics.median(v) for v in per_source.values())
    print(f"six sources, {args.latency * 1000:.0f} ms added per request, medians of {args.runs} runs (first sync each)")
    for name, alone in per_source.items():
        print(f"  {name:8} {statistics.median(alone):6.2f} s alone")
    print(f"  sequential (concurrency 1): {sequential:6.2f} s (sum of the sources)")
    print(f"  concurrent (concurrency {args.concurrency}): {concurrent:6.2f} s (slowest source alone: {slowest:.2f} s)")
    print(f"  speed-up: {sequential / concurrent:.1f}x")


if __name__ == "__main__":
    main()
