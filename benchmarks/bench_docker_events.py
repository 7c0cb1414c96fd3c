"""The Docker watch on a real (private) Docker engine: how soon a change is yielded, what an idle watch costs,
how far behind it falls under churn.

    .venv/bin/python benchmarks/bench_docker_events.py [--containers 200] [--running 20] [--changes 30]
        [--idle 60] [--churn 120] [--restarts-per-minute 20]

Needs root, dockerd (Debian docker.io) and a static busybox (busybox-static). Printed, all measured
in this run:

- change-to-yield latency, p50 / p95 over ``--changes`` stops and starts of one container done
  one after the other: from the engine's event (its timeNano) to the delta naming the container
  in its new state, and from the API call's return to the same delta;
- idle: the CPU the watch used (this process: its threads are the only ones working) and the
  engine used (dockerd's utime + stime), over ``--idle`` seconds with ``--containers`` containers
  and nothing changing, and how many snapshots it yielded (none should be);
- churn: ``--restarts-per-minute`` `docker restart` s a minute for ``--churn`` seconds, each of
  another running container; the lag p50 / p95 / max from the restart call's return to the delta
  whose cause is that restart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.docker.config import DockerConfig  # noqa: E402
from connectors.docker.connector import DockerConnector  # noqa: E402
from connectors.docker.records import CONTAINER_KIND  # noqa: E402
from inventory.records import Snapshot  # noqa: E402
from inventory.testing.docker_engine import BUSYBOX_IMAGE, DockerEngine, make_busybox_image, start_engine  # noqa: E402


class Follower:
    """The watch on a thread; every snapshot with the wall time it was yielded at."""

    def __init__(self, engine: DockerEngine) -> None:
        self.connector = DockerConnector(DockerConfig(name="bench", url=engine.url))
        self.stop = threading.Event()
        self.received: list[tuple[float, Snapshot]] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for snapshot in self.connector.watch(self.stop):
            with self.changed:
                self.received.append((time.time(), snapshot))
                self.changed.notify_all()

    def start(self) -> Follower:
        self.thread.start()
        self.wait(lambda s: not s.delta, 0, 60)
        return self

    def mark(self) -> int:
        with self.changed:
            return len(self.received)

    def wait(self, predicate: Callable[[Snapshot], bool], after: int, seconds: float = 30) -> tuple[float, Snapshot]:
        deadline = time.monotonic() + seconds
        with self.changed:
            while True:
                for at, snapshot in self.received[after:]:
                    if predicate(snapshot):
                        return at, snapshot
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit("the watch did not yield the change in time")
                self.changed.wait(left)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def populate(engine: DockerEngine, count: int, running: int) -> list[str]:
    """``count`` busybox containers, ``running`` of them started; returns the running ones' ids."""
    client = engine.client(timeout=120)
    host_config = client.create_host_config(network_mode="none")

    def create(index: int) -> str | None:
        container = client.create_container(
            BUSYBOX_IMAGE, "sleep 3600", name=f"bench-{index:04d}", host_config=host_config, stop_signal="SIGKILL"
        )
        if index < running:
            client.start(container["Id"])
            return str(container["Id"])
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        started = [c for c in pool.map(create, range(count)) if c is not None]
    client.close()
    return started


def in_state(container: str, status: str) -> Callable[[Snapshot], bool]:
    return lambda s: s.delta and any(w.external_id == container and w.status == status for w in s.workloads)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def ms(value: float) -> str:
    return f"{value * 1000:.0f} ms"


def cpu_seconds_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency(follower: Follower, client: Any, container: str, changes: int) -> None:
    from_event: list[float] = []
    from_call: list[float] = []
    for index in range(changes):
        action, status = ((client.stop, "exited"), (client.start, "running"))[index % 2]
        mark = follower.mark()
        action(container)
        returned = time.time()
        at, delta = follower.wait(in_state(container, status), mark)
        cause = delta.causes[("workload", CONTAINER_KIND, container)]
        assert cause.at is not None
        from_event.append(at - cause.at.timestamp())
        from_call.append(at - returned)
    print(
        f"latency over {changes} stops/starts: event -> yield p50 {ms(statistics.median(from_event))}, "
        f"p95 {ms(percentile(from_event, 0.95))}; call returned -> yield p50 {ms(statistics.median(from_call))}, "
        f"p95 {ms(percentile(from_call, 0.95))}"
    )


def idle(follower: Follower, engine: DockerEngine, count: int, seconds: float) -> None:
    mark = follower.mark()
    pid = engine.process.pid
    ours, theirs, wall = time.process_time(), cpu_seconds_of(pid), time.monotonic()
    time.sleep(seconds)
    ours, theirs, wall = time.process_time() - ours, cpu_seconds_of(pid) - theirs, time.monotonic() - wall
    yielded = follower.mark() - mark
    print(
        f"idle {wall:.0f} s with {count} containers: watch CPU {ours:.2f} s ({100 * ours / wall:.2f}% of a core), "
        f"dockerd CPU {theirs:.2f} s ({100 * theirs / wall:.2f}%), {yielded} snapshots yielded"
    )


def churn(follower: Follower, engine: DockerEngine, running: list[str], per_minute: int, seconds: float) -> None:
    client = engine.client(timeout=60)
    interval = 60.0 / per_minute
    lags: list[float] = []
    restarts = int(seconds / interval)
    started = time.monotonic()
    for index in range(restarts):
        container = running[index % len(running)]
        time.sleep(max(0.0, started + index * interval - time.monotonic()))
        mark = follower.mark()
        client.restart(container)
        returned = time.time()

        def restarted(snapshot: Snapshot, container: str = container) -> bool:
            cause = snapshot.causes.get(("workload", CONTAINER_KIND, container))
            return snapshot.delta and cause is not None and cause.action == "restart"

        at, _ = follower.wait(restarted, mark)
        lags.append(at - returned)
    client.close()
    print(
        f"churn: {restarts} restarts in {time.monotonic() - started:.0f} s ({per_minute}/min): restart returned -> "
        f"yield p50 {ms(statistics.median(lags))}, p95 {ms(percentile(lags, 0.95))}, max {ms(max(lags))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--running", type=int, default=20)
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds")
    parser.add_argument("--churn", type=float, default=120.0, help="seconds")
    parser.add_argument("--restarts-per-minute", type=int, default=20)
    args = parser.parse_args()

    began = time.monotonic()
    engine = start_engine()
    try:
        client = engine.client(timeout=60)
        make_busybox_image(client)
        running = populate(engine, args.containers, args.running)
        print(f"engine ready: {args.containers} containers, {len(running)} running ({time.monotonic() - began:.0f} s)")
        follower = Follower(engine).start()
        try:
            latency(follower, client, running[0], args.changes)
            idle(follower, engine, args.containers, args.idle)
            churn(follower, engine, running, args.restarts_per_minute, args.churn)
        finally:
            follower.close()
        client.close()
    finally:
        engine.stop()
    print(f"whole run {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
