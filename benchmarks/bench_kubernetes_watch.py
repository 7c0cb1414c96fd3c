"""Kubernetes watch(): change-to-yield latency, idle CPU and yield lag under churn, at 500 nodes / 15,000 pods.

The realistic fake cluster (connectors/kubernetes/fake/realistic.py) serves the lists and the watches;
the real client reads them. Three figures:

- latency: a pod's status written at the server (kubelet, status subresource) until watch() yields
  its record, p50/p95 over ``--changes`` changes made one at a time;
- idle CPU: the process CPU time of watch() over ``--idle`` seconds with nothing changing (the fake
  server runs in a separate process, so its own CPU is not counted);
- churn: ``--rate`` pod replacements a minute (a delete and a create, as a rollout does) for
  ``--churn`` seconds, the lag from each write until its snapshot is yielded, p95.

    python benchmarks/bench_kubernetes_watch.py [--nodes 500 --pods 15000 --changes 50 --idle 60 --churn 150]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from connectors.kubernetes.config import KubernetesConfig
from connectors.kubernetes.connector import KubernetesConnector

# The fake server in its own process, driven over stdin: one JSON command a line, one JSON answer a line.
SERVER = r"""
import copy, json, sys, time, uuid
from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.realistic import generate_realistic_cluster
from connectors.kubernetes.fake.server import FakeKubernetes, write_kubeconfig
spec = ClusterSpec(name="bench", nodes=int(sys.argv[1]), pods=int(sys.argv[2]))
api = FakeKubernetes(objects=generate_realistic_cluster(spec)).start()
api.bookmark_interval = 60.0  # about what an API server does
write_kubeconfig(sys.argv[3], {"bench": api})
owned = lambda p: (p["metadata"].get("ownerReferences") or [{}])[0].get("kind") == "ReplicaSet"
pods = [p for p in api.objects.items["pods"] if owned(p)]
print(json.dumps({"ready": len(api.objects.items["pods"])}), flush=True)
index = 0
for line in sys.stdin:
    command = json.loads(line)
    index += 1
    if command["do"] == "status":
        pod = pods[index % len(pods)]
        meta = pod["metadata"]
        def change(o, n=index):
            o["status"]["podIP"] = f"10.250.{n // 250 % 250}.{n % 250}"
        api.mutate("pods", meta["name"], meta["namespace"], change, manager="kubelet", subresource="status")
        print(json.dumps({"name": meta["name"], "at": time.time()}), flush=True)
    elif command["do"] == "replace":
        pod = pods[index % len(pods)]
        meta = pod["metadata"]
        api.remove("pods", meta["namespace"], meta["name"])
        new = copy.deepcopy(pod)
        new["metadata"]["name"] = meta["name"].rsplit("-", 1)[0] + "-" + uuid.uuid4().hex[:5]
        new["metadata"]["uid"] = str(uuid.uuid4())
        api.put("pods", new, manager="kube-controller-manager")
        pods[index % len(pods)] = new
        print(json.dumps({"name": new["metadata"]["name"], "at": time.time()}), flush=True)
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods", type=int, default=15000)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--churn", type=float, default=150.0)
    parser.add_argument("--rate", type=float, default=100.0, help="pod replacements a minute")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-k8s-watch-"))
    kubeconfig = workdir / "kubeconfig"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.nodes), str(args.pods), str(kubeconfig)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    ready = json.loads(server.stdout.readline())
    print(f"fake cluster: {args.nodes} nodes, {ready['ready']} pods (realistic), server in its own process")

    def command(do: str) -> dict[str, Any]:
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(json.dumps({"do": do}) + "\n")
        server.stdin.flush()
        return json.loads(server.stdout.readline())

    config = KubernetesConfig(name="bench", kubeconfig=kubeconfig, qps=1000, burst=1000, timeout=30, page_size=500)
    connector = KubernetesConnector(config)
    stop = threading.Event()
    seen: dict[str, float] = {}
    lock = threading.Lock()
    first = threading.Event()

    def follow() -> None:
        for snapshot in connector.watch(stop):
            now = time.time()
            if not snapshot.delta:
                first.set()
                continue
            with lock:
                for record in snapshot.workloads:
                    if record.kind == "pod":
                        seen.setdefault(record.name, now)

    started = time.monotonic()
    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    first.wait(600)
    print(f"list before watching: {time.monotonic() - started:.1f}s")
    time.sleep(1.0)

    def wait_for(name: str, timeout: float = 10.0) -> float | None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with lock:
                if name in seen:
                    return seen.pop(name)
            time.sleep(0.002)
        return None

    # 1. change-to-yield latency, one change at a time
    latencies = []
    for _ in range(args.changes):
        wrote = command("status")
        yielded = wait_for(wrote["name"])
        if yielded is not None:
            latencies.append(yielded - wrote["at"])
        time.sleep(0.05)
    print(
        f"change-to-yield latency over {len(latencies)}/{args.changes} pod status changes: "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {percentile(latencies, 0.95) * 1000:.0f} ms"
    )

    # 2. idle CPU
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(args.idle)
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    print(
        f"idle CPU of watch() over {wall:.0f}s with nothing changing: {cpu:.2f}s CPU "
        f"({cpu / wall * 100:.2f}% of a core)"
    )

    # 3. churn
    interval = 60.0 / args.rate
    lags: list[float] = []
    missing = 0
    pending: list[tuple[str, float]] = []
    end = time.monotonic() + args.churn
    next_at = time.monotonic()
    while time.monotonic() < end:
        wrote = command("replace")
        pending.append((wrote["name"], wrote["at"]))
        next_at += interval
        still = []
        for name, at in pending:
            with lock:
                yielded = seen.pop(name, None)
            if yielded is None:
                still.append((name, at))
            else:
                lags.append(yielded - at)
        pending = still
        time.sleep(max(0.0, next_at - time.monotonic()))
    for name, at in pending:
        yielded = wait_for(name)
        if yielded is None:
            missing += 1
        else:
            lags.append(yielded - at)
    print(
        f"churn {args.rate:g} pod replacements/min for {args.churn:.0f}s: {len(lags)} yielded, {missing} missing, "
        f"lag p50 {statistics.median(lags) * 1000:.0f} ms, p95 {percentile(lags, 0.95) * 1000:.0f} ms"
    )

    stop.set()
    thread.join(5)
    server.kill()


if __name__ == "__main__":
    main()
