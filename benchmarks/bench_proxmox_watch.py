"""Following Proxmox VE (``ProxmoxConnector.watch``): change-to-yield latency, and what an idle watch costs.

    .venv/bin/python benchmarks/bench_proxmox_watch.py [--nodes 8] [--guests 1000] [--poll-interval 5]
        [--changes 15] [--idle-seconds 60] [--latency-ms 0]

The loopback fake Proxmox VE API (connectors/proxmox/fake) serves the cluster in this process; the watch
runs in a child process of its own (so that its CPU time is the watch's alone, not the fake's), reading
the fake through the real proxmoxer, and reports each snapshot it yields with the wall-clock time.
Printed, measured in one run:

- the first poll: a full collection (the snapshot that reads every scope), its time;
- change-to-yield latency: a guest stopped or started as the web UI would (with its task), at a random
  moment of the poll cycle, until the delta naming it is yielded (with the task as cause), p50 / p95 /
  max, beside the goal (<= 1.5 x poll_interval);
- idle: with nothing changing for ``--idle-seconds``, the API requests per minute the watch made (by
  route) and the CPU the watch's process used (percent of one core), and that it yielded nothing;
- how long ``stop`` took to end the watch.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from connectors.proxmox.fake.model import FakeGuest  # noqa: E402
from connectors.proxmox.fake.server import FakeProxmox, build_cluster  # noqa: E402


def child(config_json: str) -> None:
    """The watch, alone in its process: one JSON line per snapshot; "cpu" and "stop" read from stdin."""
    from connectors.proxmox.config import ProxmoxConfig
    from connectors.proxmox.connector import ProxmoxConnector

    connector = ProxmoxConnector(ProxmoxConfig(**json.loads(config_json)))
    stop = threading.Event()
    lock = threading.Lock()

    def say(message: dict[str, Any]) -> None:
        with lock:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    def follow() -> None:
        try:
            for snapshot in connector.watch(stop):
                say(
                    {
                        "at": time.time(),
                        "delta": snapshot.delta,
                        "workloads": [w.external_id for w in snapshot.workloads],
                        "causes": sorted(c.actor or "" for c in snapshot.causes.values()),
                        "objects": snapshot.object_count,
                    }
                )
        except Exception as exc:
            say({"error": f"{type(exc).__name__}: {exc}"})

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    for line in sys.stdin:
        if line.strip() == "cpu":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            say({"cpu": usage.ru_utime + usage.ru_stime})
        elif line.strip() == "stop":
            started = time.monotonic()
            stop.set()
            thread.join()
            say({"stopped": time.monotonic() - started})
            return


class Child:
    def __init__(self, source: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(source)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.arrived:
                self.lines.append(json.loads(line))
                self.arrived.notify_all()

    def wait_for(self, accept: Any, after: int, timeout: float) -> tuple[int, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for index in range(after, len(self.lines)):
                    if "error" in self.lines[index]:
                        raise SystemExit(f"the watch failed: {self.lines[index]['error']}")
                    if accept(self.lines[index]):
                        return index, self.lines[index]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit("timed out waiting for the watch")
                self.arrived.wait(left)

    def ask(self, command: str, key: str, timeout: float = 30.0) -> float:
        after = len(self.lines)
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return float(self.wait_for(lambda line: key in line, after, timeout)[1][key])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--guests", type=int, default=1000)
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--changes", type=int, default=15)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    interval = args.poll_interval
    rng = random.Random(7)
    fake = FakeProxmox(build_cluster(nodes=args.nodes, guests=args.guests))
    fake.faults.latency = args.latency_ms / 1000
    with fake:
        print(
            f"Proxmox VE watch: {args.nodes} nodes, {args.guests} guests, poll_interval {interval:g}s, "
            f"fake latency {args.latency_ms:g} ms"
        )
        started = time.time()
        watch = Child(fake.source(poll_interval=interval))
        _, first = watch.wait_for(lambda line: not line["delta"], 0, 300)
        print(f"  first poll (a full collection, every scope read): {first['objects']} objects in "
              f"{first['at'] - started:.2f}s (process start included)")  # fmt: skip

        # Guests whose details read completely (an agent that answers, or a container): no re-read follows.
        def settled(guest: FakeGuest) -> bool:
            return not guest.template and (guest.kind == "lxc" or guest.agent == "running")

        candidates = [g for g in fake.cluster.guests if settled(g) and g.status == "running"]
        latencies: list[float] = []
        after = len(watch.lines)
        # Each change at another moment of the poll cycle, spread evenly over it (in shuffled order): a change
        # waits for the next poll, half an interval on average, then that poll's own time.
        phases = [(number + 0.5) / args.changes * interval for number in range(args.changes)]
        rng.shuffle(phases)
        for number, phase in enumerate(phases):
            time.sleep(phase)  # counted from the yield that followed the last poll
            guest = candidates[number % len(candidates)]
            user = f"user{number}@pve"
            changed_at = time.time()
            if guest.status == "running":
                fake.cluster.stop_guest(guest.vmid, user=user)
            else:
                fake.cluster.start_guest(guest.vmid, user=user)
            external_id = f"{fake.cluster.name}/{guest.vmid}"
            index, line = watch.wait_for(lambda line, e=external_id: e in line["workloads"], after, 10 * interval + 30)
            assert user in line["causes"], line
            latencies.append(line["at"] - changed_at)
            after = index + 1
        p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
        goal = 1.5 * interval
        print(
            f"  change-to-yield ({len(latencies)} stops/starts, each with its task as cause): "
            f"p50 {p50:.2f}s, p95 {p95:.2f}s, max {max(latencies):.2f}s; "
            f"goal p95 <= {goal:.2f}s (1.5 x poll_interval): {'met' if p95 <= goal else 'NOT met'}"
        )

        time.sleep(interval)  # the last change's poll is over
        fake.reset_calls()
        before_lines = len(watch.lines)
        cpu_before = watch.ask("cpu", "cpu")
        time.sleep(args.idle_seconds)
        cpu_after = watch.ask("cpu", "cpu")
        calls = dict(fake.calls)
        yielded = sum(1 for line in watch.lines[before_lines:] if "at" in line)
        per_minute = sum(calls.values()) * 60 / args.idle_seconds
        routes = ", ".join(f"{route} {n * 60 / args.idle_seconds:.1f}/min" for route, n in sorted(calls.items()))
        print(f"  idle for {args.idle_seconds:g}s (nothing changes): {per_minute:.1f} requests/min ({routes}); "
              f"{yielded} snapshots yielded; watch process CPU {cpu_after - cpu_before:.2f}s = "
              f"{100 * (cpu_after - cpu_before) / args.idle_seconds:.2f}% of one core")  # fmt: skip
        stopped = watch.ask("stop", "stopped")
        print(f"  stop: the watch returned {stopped:.3f}s after stop was set")
        watch.process.wait(timeout=30)


if __name__ == "__main__":
    main()
