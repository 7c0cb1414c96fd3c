"""Soak: the sync loop for 200 cycles against churning fakes, watching memory and file descriptors.

    .venv/bin/python benchmarks/bench_soak.py [--cycles 200] [--every 20] [--interval 0.05]
        [--max-seconds 600] [--postgres URL]

The demo homelab (inventory/demo.py: fake Proxmox VE, Kubernetes and Docker APIs
on loopback) changes before every cycle: guests stop and start, a pod is
replaced, containers exit and are upgraded, LXCs come and go. The real loop
(inventory.loop.SyncLoop, with metrics and the per-source locks) syncs the three
sources through the real connectors into SQLite (default) or a fresh PostgreSQL
database, in this process, so that what it leaks shows here.

Every ``--every`` cycles it prints RSS, open file descriptors, threads, and the
changes written so far. At the end: RSS and descriptors of the last sample
against the first one taken after warm-up (cycle ``--every``), as ratios and
differences. Goal: flat (RSS ratio close to 1.0, descriptor difference 0).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--every", type=int, default=20, help="print a sample every N cycles")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between two syncs of a source")
    parser.add_argument(
        "--max-seconds", type=float, default=600, help="stop early after this long (the run stays bounded)"
    )
    parser.add_argument(
        "--postgres", metavar="URL", help="admin URL of a PostgreSQL server: soak into a fresh database there"
    )
    args = parser.parse_args()
    # Partial or failed syncs are counted below; their log lines would drown the samples.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")

    from inventory.config import load_config
    from inventory.connector import ConnectorRegistry
    from inventory.demo import DemoLab
    from inventory.loop import SyncLoop
    from inventory.metrics import SyncMetrics
    from inventory.storage.database import open_database
    from inventory.sync import SourceOutcome

    workdir = Path(tempfile.mkdtemp(prefix="inventory-soak-"))
    scratch = None
    if args.postgres:
        from inventory.testing.scratch_postgres import ScratchDatabase

        scratch = ScratchDatabase(args.postgres, prefix="inventory_soak")
        database_url = scratch.url
    else:
        database_url = f"sqlite:///{workdir / 'inventory.db'}"
    registry = ConnectorRegistry.discover()
    failures: list[str] = []
    changes = 0

    def count(outcome: SourceOutcome) -> None:
        nonlocal changes
        if outcome.result is not None:
            changes += outcome.result.changed
        if outcome.status != "success":
            failures.append(f"{outcome.source}: {outcome.status}: {outcome.error}")

    with DemoLab(workdir) as lab:
        config = load_config(lab.write_config(database_url, interval=f"{args.interval}s"), registry=registry)
        db = open_database(database_url, migrate=True)
        # The polling loop (follow=False): the demo's sources all stream, and followed live they would never cycle.
        loop = SyncLoop(
            db, config, registry, jitter=0, coordinate=False, follow=False, metrics=SyncMetrics(), on_outcome=count
        )
        print(
            f"soak: {args.cycles} cycles, 3 sources (pve, k3s, docker01), interval {args.interval}s, database "
            f"{db.display_url}"
        )
        print(f"{'cycle':>6} {'elapsed s':>10} {'RSS MiB':>9} {'fds':>5} {'threads':>8} {'changes':>8} {'failures':>9}")
        samples: list[tuple[int, float, int]] = []
        started = time.monotonic()
        step = 0
        while loop.cycles < args.cycles and time.monotonic() - started < args.max_seconds:
            step += 1
            lab.churn(step)
            lab.forget_requests()  # the fakes share this process: their request logs are not the loop's memory
            loop.run(max_cycles=loop.cycles + 1)
            if loop.cycles % args.every == 0:
                gc.collect()  # what stays after a collection is what grows
                rss, fds = rss_mib(), open_fds()
                samples.append((loop.cycles, rss, fds))
                elapsed = time.monotonic() - started
                print(
                    f"{loop.cycles:>6} {elapsed:>10.1f} {rss:>9.1f} {fds:>5} {threading.active_count():>8} "
                    f"{changes:>8} {len(failures):>9}",
                    flush=True,
                )
        db.dispose()
    if scratch is not None:
        scratch.drop()

    if len(samples) < 2:
        print("not enough samples (raise --max-seconds or lower --every)")
        return
    (first_cycle, first_rss, first_fds), (last_cycle, last_rss, last_fds) = samples[0], samples[-1]
    print(
        f"\ncycles {first_cycle} -> {last_cycle}: RSS {first_rss:.1f} -> {last_rss:.1f} MiB (ratio "
        f"{last_rss / first_rss:.3f}, "
        f"{(last_rss - first_rss) / max(1, last_cycle - first_cycle) * 1024:.1f} KiB/cycle); "
        f"fds {first_fds} -> {last_fds} (difference {last_fds - first_fds:+d})"
    )
    print(f"syncs that did not succeed: {len(failures)}" + (f" (first: {failures[0]})" if failures else ""))
    print("goal: RSS ratio close to 1.0 and fd difference 0 (flat memory and descriptors)")


if __name__ == "__main__":
    main()
