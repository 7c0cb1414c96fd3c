"""Live sources end to end: change-to-visible latency per source through the whole product, and what following
all three costs while nothing changes.

    .venv/bin/python benchmarks/bench_live_sources.py [--changes 20] [--idle 60] [--poll-interval 2]
        [--docker real|fake] [--scale demo|realistic] [--engine sqlite|postgresql] [--containers N]
        [--churn-minutes 30 [--pod-replacements 100] [--container-restarts 20] [--tracemalloc]]
        [--full-sync-interval SECONDS]

The far sides run in a child process (the demo's lab, inventory/demo.py: fake Kubernetes and Proxmox
VE APIs, and the fake Docker engine with ``--docker fake``), so that this process's CPU is the
product's only: the sync loop following the three sources with their ``LiveSource`` (as ``inventory
sync`` and ``demo --churn`` run it) into a database. With ``--docker real`` (the default) Docker is a
real private engine (inventory/testing/docker_engine.py: root, dockerd and a static busybox).

Printed, all measured in this run:

- latency per source, p50 / p95 / max over ``--changes`` changes made one after the other at the far
  side (Kubernetes: ``kubectl apply`` relabels a deployment; Proxmox: a guest stopped and started by a
  task; Docker: a container stopped and started, through the engine's API), from the moment the change
  is asked for until ``queries.list_changes`` (what ``/api/v1/changes`` and ``changes -w`` read) returns
  its row, polled every 10 ms (each change after a random pause, up to one Proxmox poll interval, so
  that it falls anywhere between two polls); goals: <= 2 s for Kubernetes and Docker, <= 1.5 x ``poll_interval``
  for Proxmox (which has no change stream: it is polled);
- idle: this process's CPU over ``--idle`` seconds with nothing changing (and the lab's, and
  dockerd's), and the object rows written meanwhile (hosts, workloads, services and changes rows
  added or changed: must be 0).

``--scale realistic`` serves 500 Kubernetes nodes with 15,000 pods and 1,000 Proxmox guests, and 2,000
Docker containers besides the changed ones (``--containers``: the fake engine's, a fifth of them running;
with ``--docker real``, created and never started); the first syncs take a while; the changes are made on
the first deployment and guest.

``--churn-minutes M`` then replaces ``--pod-replacements`` pods a minute (the ReplicaSet controller's create,
then the old pod's deletion) and restarts ``--container-restarts`` containers a minute (the fake engine's
kill / die / stop / start / restart events; with ``--docker real`` a client's restart) for M minutes, and
prints each source's lag p50 / p95 / max (from the change until ``list_changes`` returns its row, polled
every 100 ms), the RSS of this process and of the lab every 30 s (start, at 5 minutes, end, and the slope
per 10 minutes), and the drift of the full syncs that ran meanwhile. ``--idle 0`` and ``--changes 0`` skip
the other measures.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
POSTGRES_ADMIN_URL = os.environ.get("INVENTORY_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


# --- the far side: the lab in a child process, changed on request ------------------------------------


def lab_child(directory: Path, scale: str, poll_interval: float, containers: int) -> None:
    """Start the lab, write its config, then make one change per line read from stdin; answer each."""
    import yaml

    from connectors.docker.fake import generate_containers
    from inventory.demo import DemoLab

    options: dict[str, Any] = {}
    if scale == "realistic":
        from connectors.kubernetes.fake.objects import ClusterSpec
        from connectors.kubernetes.fake.realistic import generate_realistic_cluster
        from connectors.kubernetes.fake.server import FakeKubernetes
        from connectors.proxmox.fake.model import build_cluster
        from connectors.proxmox.fake.server import FakeProxmox

        spec = ClusterSpec(name="homelab", nodes=500, pods=15000)
        options["kubernetes"] = FakeKubernetes(objects=generate_realistic_cluster(spec))
        options["proxmox"] = FakeProxmox(build_cluster(name="homelab", nodes=10, guests=1000))
    with DemoLab(directory, **options) as lab:
        for container in generate_containers(containers, seed="bench"):  # the fake engine's extra containers
            lab.docker.containers[container.id] = container
        config_path = lab.write_config(f"sqlite:///{directory / 'unused.db'}")
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        config["sources"][0]["poll_interval"] = f"{poll_interval:g}s"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        deployment = lab.kubernetes.objects.items["deployments"][0]["metadata"]
        guest = next(g for g in lab.proxmox.cluster.guests if g.status == "running" and not g.template)
        print(f"ready {config_path} {deployment['namespace']}/{deployment['name']} {guest.name}", flush=True)
        for line in sys.stdin:
            what, index = line.split()[:2]
            if what == "k8s":
                label = {"bench/change": index}

                def relabel(obj: dict[str, Any], label: dict[str, str] = label) -> None:
                    obj["metadata"]["labels"] = {**(obj["metadata"].get("labels") or {}), **label}

                lab.kubernetes.mutate(
                    "deployments", deployment["name"], deployment["namespace"], relabel, "kubectl-client-side-apply"
                )
            elif what == "pve":
                if guest.status == "running":
                    lab.proxmox.cluster.stop_guest(guest.vmid, user="root@pam")
                else:
                    lab.proxmox.cluster.start_guest(guest.vmid, user="root@pam")
            elif what == "docker":
                lab._churn_docker(1)  # certbot killed or started, with the engine's events
            elif what == "churn":  # churn SECONDS PODS_PER_MINUTE RESTARTS_PER_MINUTE LOG (restarts: the fake's)
                seconds, pods, restarts, log = line.split()[1:]
                threading.Thread(
                    target=churn_lab,
                    args=(lab, float(seconds), int(pods), int(restarts), Path(log)),
                    name="churn",
                    daemon=True,
                ).start()
            print("ok", flush=True)


def churn_lab(lab: Any, seconds: float, pods_per_minute: int, restarts_per_minute: int, log: Path) -> None:
    """Pod replacements (the ReplicaSet controller's create, then the old pod's deletion) and container restarts
    (the fake engine's die / start / restart events) at a steady rate; each logged as ``epoch source name``."""
    import copy

    from connectors.kubernetes.fake.objects import object_uid

    fake = lab.kubernetes
    pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in fake.objects.items["pods"]}
    pod_order = sorted(pods)
    running = sorted((c for c in lab.docker.containers.values() if c.state == "running"), key=lambda c: c.name)
    events: list[tuple[float, str]] = []  # (due, what), merged by time
    if pods_per_minute:
        events += [(i * 60.0 / pods_per_minute, "pod") for i in range(int(seconds * pods_per_minute / 60))]
    if restarts_per_minute and running:
        events += [(i * 60.0 / restarts_per_minute, "restart") for i in range(int(seconds * restarts_per_minute / 60))]
    events.sort()
    began = time.monotonic()
    with log.open("a", encoding="utf-8") as out:
        for step, (due, what) in enumerate(events):
            time.sleep(max(0.0, began + due - time.monotonic()))
            if what == "pod":
                namespace, name = pod_order[step % len(pod_order)]
                old = pods.pop((namespace, name))
                new = copy.deepcopy(old)
                base = name.rsplit("-", 1)[0]
                new_name = f"{base}-c{step:06d}"
                new["metadata"]["name"] = new_name
                new["metadata"]["uid"] = object_uid("homelab", "pod", namespace, new_name)
                new["metadata"].pop("managedFields", None)
                fake.put("pods", new, manager="kube-controller-manager", operation="Update")
                fake.remove("pods", namespace, name)
                pods[(namespace, new_name)] = new
                pod_order[step % len(pod_order)] = (namespace, new_name)
                out.write(f"{time.time():.6f} k3s {new_name}\n")
            else:
                container = running[step % len(running)]
                container.started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
                for action in ("kill", "die", "stop", "start", "restart"):
                    extra = {"signal": "15"} if action == "kill" else {"exitCode": "143"} if action == "die" else {}
                    lab.docker.emit(container, action, **extra)
                out.write(f"{time.time():.6f} docker01 {container.name}\n")
            out.flush()


class Lab:
    def __init__(self, directory: Path, scale: str, poll_interval: float, containers: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--lab-child", str(directory), "--scale", scale,
             "--poll-interval", str(poll_interval), "--containers", str(containers)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None and self.process.stdin is not None
        ready = self.process.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise SystemExit("the lab did not start")
        self.config_path, self.deployment, self.guest = Path(ready[1]), ready[2], ready[3]

    def change(self, what: str, index: int | str) -> None:
        assert self.process.stdout is not None and self.process.stdin is not None
        self.process.stdin.write(f"{what} {index}\n")
        self.process.stdin.flush()
        if self.process.stdout.readline().strip() != "ok":
            raise SystemExit(f"the lab failed to make a {what} change")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


def rss_mib_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def slope_per_10_minutes(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB), in MiB per 10 minutes."""
    if len(samples) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in samples)
    mean_v = statistics.fmean(v for _, v in samples)
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    return 600 * sum((t - mean_t) * (v - mean_v) for t, v in samples) / spread if spread else 0.0


def cpu_seconds_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# --- the near side: the product following the three sources -----------------------------------------


def last_change_id(db: Any) -> int:
    from sqlalchemy import func, select

    from inventory.storage.models import Change

    with db.session() as session:
        return int(session.scalar(select(func.max(Change.id))) or 0)


def written(db: Any) -> tuple[int, ...]:
    """Rows and their last change, per object table, and the change rows: equal before and after = nothing written."""
    from sqlalchemy import func, select

    from inventory.storage.models import Change, HostRow, ServiceRow, WorkloadRow

    with db.session() as session:
        marks: list[Any] = []
        for table in (HostRow, WorkloadRow, ServiceRow):
            count, changed = session.execute(select(func.count(), func.max(table.changed_at))).one()
            marks += [count, changed.timestamp() if changed else 0]
        marks.append(session.scalar(select(func.count()).select_from(Change)))
    return tuple(marks)


def wait_visible(db: Any, source: str, name: str, after: int, timeout: float = 30.0) -> tuple[float, int, str]:
    """Poll list_changes every 10 ms until a change row of ``source`` naming ``name`` shows after id ``after``."""
    from inventory.queries import list_changes

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as session:
            rows = list_changes(session, since=EPOCH, after_id=after, source=source)
        for row in rows:
            if row["name"] == name:
                return time.monotonic(), max(r["id"] for r in rows), row["by"]
        time.sleep(0.01)
    raise SystemExit(f"{source}: the change of {name} was not visible within {timeout:g}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--poll-interval", type=float, default=2.0, help="Proxmox: seconds between two polls")
    parser.add_argument("--docker", choices=("real", "fake"), default="real")
    parser.add_argument("--scale", choices=("demo", "realistic"), default="demo")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--containers", type=int, help="Docker containers besides the changed ones (default: 2,000 at realistic scale)"
    )
    parser.add_argument("--churn-minutes", type=float, default=0.0, help="then churn this long (0: no churn)")
    parser.add_argument("--pod-replacements", type=int, default=100, help="churn: pods replaced a minute")
    parser.add_argument("--container-restarts", type=int, default=20, help="churn: containers restarted a minute")
    parser.add_argument(
        "--full-sync-interval", type=float, help="seconds between full syncs while watching (default: the product's)"
    )
    parser.add_argument(
        "--tracemalloc", action="store_true", help="churn: print where this process's memory grew (slow)"
    )
    parser.add_argument("--lab-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.containers is None:
        args.containers = 2000 if args.scale == "realistic" else 0
    if args.lab_child is not None:
        lab_child(args.lab_child, args.scale, args.poll_interval, args.containers)
        return

    from contextlib import ExitStack

    import yaml

    from inventory.config import load_config
    from inventory.connector import ConnectorRegistry
    from inventory.loop import SyncLoop
    from inventory.storage.database import open_database
    from inventory.testing.scratch_postgres import ScratchDatabase

    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-live-sources-")))
        if args.engine == "postgresql":
            url = stack.enter_context(ScratchDatabase(POSTGRES_ADMIN_URL, prefix="bench_live_sources")).url
        else:
            url = f"sqlite:///{workdir / 'inventory.db'}"
        began = time.monotonic()
        lab = Lab(workdir / "lab", args.scale, args.poll_interval, args.containers if args.docker == "fake" else 0)
        stack.callback(lab.close)
        engine = client = None
        docker_name = "certbot"
        config = yaml.safe_load(lab.config_path.read_text(encoding="utf-8"))
        config["database"]["url"] = url
        if args.full_sync_interval:
            for source in config["sources"]:
                source["full_sync_interval"] = f"{args.full_sync_interval:g}s"
        if args.docker == "real":
            from inventory.testing.docker_engine import BUSYBOX_IMAGE, make_busybox_image, start_engine

            engine = start_engine()
            stack.callback(engine.stop)
            client = engine.client(timeout=60)
            make_busybox_image(client)
            host_config = client.create_host_config(network_mode="none")
            for index in range(10):  # a small host: ten containers, the first one changed
                created = client.create_container(
                    BUSYBOX_IMAGE, ["sleep", "86400"], name=f"bench-{index}", host_config=host_config
                )
                client.start(created["Id"])
            # The rest created, never started (a host's stopped containers): listed and inspected, never running.
            for index in range(args.containers):
                client.create_container(
                    BUSYBOX_IMAGE, ["sleep", "86400"], name=f"idle-{index:05d}", host_config=host_config
                )
            docker_name = "bench-0"
            config["sources"][2]["url"] = engine.url
        lab.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        registry = ConnectorRegistry.discover()
        loaded = load_config(lab.config_path, registry=registry)
        db = open_database(url, migrate=True)
        stack.callback(db.dispose)
        loop = SyncLoop(db, loaded, registry, jitter=0, coordinate=False)
        runner = threading.Thread(target=loop.run, name="loop", daemon=True)
        runner.start()

        def stop_loop() -> None:
            loop.request_stop()
            runner.join(60)

        stack.callback(stop_loop)
        deadline = time.monotonic() + 900
        while not all(live.stats.state == "watching" and live.stats.deltas > 0 for live in loop.live):
            if time.monotonic() > deadline:
                raise SystemExit(f"not watching: {[(live.name, live.stats.state) for live in loop.live]}")
            time.sleep(0.1)
        print(
            f"lab: {args.scale} scale, Docker {args.docker} ({args.containers} containers besides the changed ones), "
            f"{args.engine}; every source followed after "
            f"{time.monotonic() - began:.1f}s (full syncs and first readings); Proxmox poll_interval "
            f"{args.poll_interval:g}s"
        )

        def docker_change(index: int) -> None:
            if client is None:
                lab.change("docker", index)
            elif index % 2 == 0:
                client.stop(docker_name, timeout=0)
            else:
                client.start(docker_name)

        sources = (
            ("kubernetes", "k3s", lab.deployment.split("/")[1], lambda i: lab.change("k8s", i), 2.0),
            ("proxmox", "pve", lab.guest, lambda i: lab.change("pve", i), 1.5 * args.poll_interval),
            ("docker", "docker01", docker_name, docker_change, 2.0),
        )
        rng = random.Random(7)
        for label, source, name, change, goal in sources if args.changes else ():
            seconds: list[float] = []
            causes: set[str] = set()
            last = last_change_id(db)
            # A random pause first: a change right after the last one was seen would always come just after a
            # Proxmox poll (the worst case, a whole interval); at a random moment it waits half of one on average.
            pause = args.poll_interval if source == "pve" else 0.2
            for index in range(args.changes):
                time.sleep(rng.uniform(0, pause))
                asked = time.monotonic()
                change(index)
                seen, last, by = wait_visible(db, source, name, last)
                seconds.append(seen - asked)
                causes.add(by)
            p50, p95 = statistics.median(seconds), percentile(seconds, 0.95)
            print(
                f"latency {label:<10} over {args.changes} changes: p50 {p50:.3f}s, p95 {p95:.3f}s, "
                f"max {max(seconds):.3f}s (goal <= {goal:g}s: {'met' if p95 <= goal else 'MISSED'}); BY "
                + ", ".join(sorted(causes))
            )

        time.sleep(3.0)  # the last change's stragglers (a Service's members) land before the idle window
        if args.idle > 0:
            idle(args, db, loop, lab, engine)
        if args.churn_minutes > 0:
            churn(args, db, loop, lab, client, workdir)
        if client is not None:
            client.close()


def idle(args: argparse.Namespace, db: Any, loop: Any, lab: Lab, engine: Any) -> None:
    before, deltas_before = written(db), sum(live.stats.changed for live in loop.live)
    ours, lab_cpu, wall = time.process_time(), cpu_seconds_of(lab.process.pid), time.monotonic()
    engine_cpu = cpu_seconds_of(engine.process.pid) if engine is not None else 0.0
    time.sleep(args.idle)
    wall = time.monotonic() - wall
    ours, lab_cpu = time.process_time() - ours, cpu_seconds_of(lab.process.pid) - lab_cpu
    engine_cpu = cpu_seconds_of(engine.process.pid) - engine_cpu if engine is not None else 0.0
    after, deltas_after = written(db), sum(live.stats.changed for live in loop.live)
    rows = "0" if after == before else f"SOME ({before} -> {after})"
    print(
        f"idle {wall:.0f}s following all three: this process {ours:.2f} CPU s "
        f"({100 * ours / wall:.2f}% of a core); "
        f"the lab's fakes {lab_cpu:.2f} s"
        + (f", dockerd {engine_cpu:.2f} s" if engine is not None else "")
        + f"; object rows written: {rows}; objects changed by the watches: {deltas_after - deltas_before}"
        + f"; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


def churn(args: argparse.Namespace, db: Any, loop: Any, lab: Lab, client: Any, workdir: Path) -> None:
    """Pods replaced and containers restarted at a steady rate for ``--churn-minutes``: each change's lag until
    ``list_changes`` shows it, and the RSS of this process and of the lab sampled every 30 s."""
    from inventory.queries import list_changes

    seconds = args.churn_minutes * 60
    log = workdir / "churn.log"
    log.touch()
    restarts_in_lab = 0 if client is not None else args.container_restarts
    lab.change("churn", f"{seconds:g} {args.pod_replacements} {restarts_in_lab} {log}")
    stop = threading.Event()
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(12)
        first = tracemalloc.take_snapshot()
    began = time.monotonic()
    if client is not None:  # the real engine: a client's restart of the running containers, in turn

        def restart_real() -> None:
            with log.open("a", encoding="utf-8") as out:
                for step in range(int(args.churn_minutes * args.container_restarts)):
                    if stop.wait(max(0.0, began + step * 60.0 / args.container_restarts - time.monotonic())):
                        return
                    name = f"bench-{step % 10}"
                    out.write(f"{time.time():.6f} docker01 {name}\n")
                    out.flush()
                    client.restart(name, timeout=0)

        threading.Thread(target=restart_real, name="restarts", daemon=True).start()
    seen: dict[tuple[str, str], list[float]] = {}
    after = last_change_id(db)
    rss: list[tuple[float, float, float]] = []  # (seconds, ours, the lab's)
    next_sample = began
    drift_before = {live.name: live.stats.drift_syncs for live in loop.live}
    while time.monotonic() < began + seconds + 30:  # the last changes' lag
        now = time.monotonic()
        if now >= next_sample and now < began + seconds + 1:
            rss.append((now - began, rss_mib_of(os.getpid()), rss_mib_of(lab.process.pid)))
            next_sample += 30
        with db.session() as session:
            rows = list_changes(session, since=EPOCH, after_id=after)
        stamp = time.time()
        for row in rows:
            seen.setdefault((row["source"], row["name"]), []).append(stamp)
            after = max(after, row["id"])
        time.sleep(0.1)
    stop.set()
    lags: dict[str, list[float]] = {}
    missing: dict[str, int] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        at, source, name = line.split()
        visible = [t for t in seen.get((source, name), []) if t >= float(at)]
        if visible:
            lags.setdefault(source, []).append(visible[0] - float(at))
        else:
            missing[source] = missing.get(source, 0) + 1
    print(
        f"churn {args.churn_minutes:g} min at {args.pod_replacements} pod replacements and "
        f"{args.container_restarts} container restarts a minute (Docker {args.docker}), {args.engine}:"
    )
    for source, values in sorted(lags.items()):
        p95 = percentile(values, 0.95)
        print(
            f"  lag {source:<9} {len(values)} changes seen, {missing.get(source, 0)} not seen: "
            f"p50 {statistics.median(values):.3f}s, p95 {p95:.3f}s, max {max(values):.3f}s "
            f"(goal p95 <= 5s: {'met' if p95 <= 5 else 'MISSED'})"
        )
    for source, count in sorted(missing.items()):
        if source not in lags:
            print(f"  lag {source:<9} none of its {count} changes seen")
    at_5 = min(rss, key=lambda sample: abs(sample[0] - 300))
    for label, column in (("this process", 1), ("the lab", 2)):
        later = [(sample[0], sample[column]) for sample in rss if sample[0] >= 300]
        print(
            f"  RSS {label}: start {rss[0][column]:.0f} MiB, at {at_5[0] / 60:.0f} min {at_5[column]:.0f} MiB, "
            f"end {rss[-1][column]:.0f} MiB; slope {slope_per_10_minutes([(s[0], s[column]) for s in rss]):+.1f} "
            f"MiB / 10 min over the run, {slope_per_10_minutes(later):+.1f} after 5 min "
            f"({len(rss)} samples, 30 s apart)"
        )
    print("  RSS samples, this process / the lab (MiB): " + " ".join(f"{s[1]:.0f}/{s[2]:.0f}" for s in rss))
    if args.tracemalloc:
        grown = tracemalloc.take_snapshot().compare_to(first, "traceback")
        for stat in grown[:8]:
            print(f"  grew {stat.size_diff / 2**20:+.1f} MiB in {stat.count_diff:+d} blocks at:")
            for frame in stat.traceback.format()[-12:]:
                print("     " + frame)
    drift = {live.name: (live.stats.drift_syncs - drift_before[live.name], live.stats.last_drift) for live in loop.live}
    print(
        "  full syncs while churning (count, last drift_repaired): "
        + ", ".join(f"{name} {count} ({last})" for name, (count, last) in sorted(drift.items()))
        + f"; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
