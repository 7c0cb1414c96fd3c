"""Docker connector at scale: 500 containers on a real (private) Docker engine, synced into PostgreSQL,
side by side with ``ansible-inventory`` and the community.docker ``docker_containers`` inventory plugin.

    .venv/bin/python benchmarks/bench_docker.py [--containers 500] [--start-every 10] [--runs 3]
        [--ansible-inventory /tmp/ansible-venv/bin/ansible-inventory] [--postgres URL]
    .venv/bin/python benchmarks/bench_docker.py --fake 10000     # scale run against the loopback fake

Needs root, dockerd (Debian docker.io) and a static busybox (busybox-static).
The plugin comes from PyPI's ``ansible`` package (it bundles community.docker):
``python3 -m venv /tmp/ansible-venv && /tmp/ansible-venv/bin/pip install ansible requests docker``
(the plugins need ``docker`` and ``requests`` beside Ansible).

Printed, all measured in this run (medians of ``--runs``):

- raw floor: the connector's one list call (``/containers/json?all=1``, same
  client) read as JSON;
- in-process: collect only, a first sync into an empty PostgreSQL database,
  and a no-change resync;
- whole process against whole process: ``inventory sync --once`` (a new
  process: imports, config, collect, write into an empty database) and
  ``ansible-inventory -i docker_containers.yml --list``; the ratio of the two
  (goal: ours at least 5x faster).
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.docker.config import DockerConfig  # noqa: E402
from connectors.docker.connector import DockerConnector, needs_inspect  # noqa: E402
from inventory.storage.database import open_database  # noqa: E402
from inventory.storage.models import ServiceRow, WorkloadRow  # noqa: E402
from inventory.sync import sync_source  # noqa: E402
from inventory.testing.docker_engine import BUSYBOX_IMAGE, DockerEngine, make_busybox_image, start_engine  # noqa: E402
from inventory.testing.scratch_postgres import ScratchDatabase  # noqa: E402

GOAL_SPEEDUP = 5.0
DEFAULT_ANSIBLE = "/tmp/ansible-venv/bin/ansible-inventory"


def median_time(action: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """Median wall time of ``runs`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def populate(engine: DockerEngine, count: int, start_every: int) -> int:
    """``count`` busybox containers, every ``start_every``-th started, half in 10 Compose projects."""
    client = engine.client(timeout=120)
    host_config = client.create_host_config(network_mode="none")

    def create(index: int) -> bool:
        labels = {}
        if index % 2 == 0:
            labels = {
                "com.docker.compose.project": f"project{index % 10}",
                "com.docker.compose.service": f"svc{index % 3}",
                "com.docker.compose.container-number": str(index // 20 + 1),
            }
        container = client.create_container(
            BUSYBOX_IMAGE,
            "sleep 3600",
            name=f"bench-{index:04d}",
            labels=labels,
            host_config=host_config,
            stop_signal="SIGKILL",
        )
        if index % start_every == 0:
            client.start(container["Id"])
            return True
        return False

    with ThreadPoolExecutor(max_workers=4) as pool:
        started = sum(pool.map(create, range(count)))
    client.close()
    return started


def create_database(admin_url: str) -> ScratchDatabase:
    """An empty database at the code's schema revision."""
    scratch = ScratchDatabase(admin_url)
    open_database(scratch.url, migrate=True).dispose()
    return scratch


def run_process(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({completed.returncode}): {completed.stderr.strip()[-2000:]}")
    return elapsed, completed.stdout


def ansible_hosts(output: str) -> int:
    """How many containers ansible-inventory listed (it exits 0 even when the plugin did not run)."""
    return len(json.loads(output).get("_meta", {}).get("hostvars", {}))


def fake_scale_run(count: int, admin_url: str) -> None:
    """N containers from the fake engine in its own process (as a real engine would be), into PostgreSQL."""
    with tempfile.TemporaryDirectory(prefix="inv-fake-docker-", dir="/tmp") as tmp:
        socket_path = Path(tmp) / "docker.sock"
        command = [
            sys.executable,
            "-m",
            "connectors.docker.fake",
            "--containers",
            str(count),
            "--socket",
            str(socket_path),
        ]
        fake = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert fake.stdout is not None
        print(fake.stdout.readline().strip())
        scratch = create_database(admin_url)
        url = scratch.url
        try:
            config = DockerConfig(name="fake", url=f"unix://{socket_path}")
            import docker

            client = docker.APIClient(base_url=config.url, version="auto")
            floor, listed = median_time(lambda: client.containers(all=True), 1)
            print(
                f"raw floor (one list call as JSON): {floor:6.3f} s  ({len(listed)} containers, "
                f"{sum(1 for c in listed if needs_inspect(c))} to inspect)"
            )
            db = open_database(url, migrate=False)
            first_sync, first = median_time(lambda: sync_source(db, DockerConnector(config)), 1)
            assert first.ok and first.result is not None, first.error
            print(f"first sync into PostgreSQL:        {first_sync:6.3f} s  (created {first.result.created})")
            resync, again = median_time(lambda: sync_source(db, DockerConnector(config)), 1)
            assert again.ok and again.result is not None, again.error
            print(f"no-change resync:                  {resync:6.3f} s  (unchanged {again.result.unchanged})")
            db.dispose()
        finally:
            fake.terminate()
            fake.wait(timeout=10)
            scratch.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=500)
    parser.add_argument(
        "--start-every", type=int, default=10, help="start every n-th container (the rest stay created)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ansible-inventory", default=DEFAULT_ANSIBLE)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("INVENTORY_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--fake",
        type=int,
        metavar="N",
        help="instead: sync N containers from the loopback fake engine (a scale run larger than a test engine holds)",
    )
    args = parser.parse_args()
    if args.fake:
        fake_scale_run(args.fake, args.postgres)
        return

    engine = start_engine()
    databases: list[ScratchDatabase] = []
    try:
        client = engine.client()
        make_busybox_image(client)
        started = time.perf_counter()
        running = populate(engine, args.containers, args.start_every)
        print(f"engine: private dockerd (pid {engine.process.pid}) at {engine.url}")
        print(
            f"setup:  {args.containers} containers created ({running} started) in {time.perf_counter() - started:.1f} "
            "s (not measured below)"
        )
        print()

        floor, listed = median_time(lambda: client.containers(all=True), args.runs)
        inspects = sum(1 for c in listed if needs_inspect(c))
        print(f"raw floor (one list call as JSON):     {floor:6.3f} s  ({len(listed)} containers)")

        config = DockerConfig(name="bench", url=engine.url)
        collect_only, snapshot = median_time(lambda: DockerConnector(config).collect(), args.runs)
        print(
            f"collect only:                          {collect_only:6.3f} s  ({snapshot.object_count} records, "
            f"{inspects} inspects, complete={snapshot.complete})"
        )

        databases.append(create_database(args.postgres))
        db = open_database(databases[-1].url, migrate=False)
        started = time.perf_counter()
        first = sync_source(db, DockerConnector(config))
        first_sync = time.perf_counter() - started
        assert first.ok and first.result is not None, first.error
        print(f"first sync into PostgreSQL:            {first_sync:6.3f} s  (created {first.result.created})")
        resync, again = median_time(lambda: sync_source(db, DockerConnector(config)), args.runs)
        assert again.ok and again.result is not None, again.error
        print(
            f"no-change resync:                      {resync:6.3f} s  (unchanged {again.result.unchanged}, changed "
            f"{again.result.changed})"
        )
        with db.session() as session:
            workloads = session.scalar(select(func.count()).select_from(WorkloadRow))
            services = session.scalar(select(func.count()).select_from(ServiceRow))
        db.dispose()
        print(f"stored: {workloads} containers, {services} Compose projects and services")
        print()

        with tempfile.TemporaryDirectory() as tmp:
            config_file = Path(tmp) / "inventory.yaml"
            config_file.write_text(f"sources:\n  - {{type: docker, name: bench, url: '{engine.url}'}}\n")
            cli = [str(Path(sys.executable).with_name("inventory")), "--config", str(config_file), "sync", "--once"]
            cold_times = []
            for _ in range(args.runs):
                databases.append(create_database(args.postgres))  # each run writes everything into an empty database
                cold_times.append(run_process(cli, env={**os.environ, "INVENTORY_DATABASE_URL": databases[-1].url})[0])
            ours = statistics.median(cold_times)
            print(f"inventory sync --once (new process, empty PostgreSQL): {ours:6.3f} s")
            our_floor, _ = median_time(lambda: run_process([cli[0], "--version"]), args.runs)
            print(f"  process floor, inventory --version:  {our_floor:6.3f} s")
            # The three packages a Docker sync into PostgreSQL cannot run without, and nothing else.
            import_floor, _ = median_time(
                lambda: run_process([sys.executable, "-c", "import sqlalchemy, psycopg, docker"]), args.runs
            )
            print(f"  import floor, python -c 'import sqlalchemy, psycopg, docker': {import_floor:6.3f} s")

            ansible = shutil.which(args.ansible_inventory) or (
                args.ansible_inventory if Path(args.ansible_inventory).is_file() else None
            )
            if ansible is None:
                print(f"ansible-inventory: not found at {args.ansible_inventory}; install it with")
                print(
                    "  python3 -m venv /tmp/ansible-venv && /tmp/ansible-venv/bin/pip install ansible requests docker"
                )
                print("and run again. Only our figures are printed.")
                return
            # The plugin only accepts files named *docker.yml / *docker.yaml.
            plugin_file = Path(tmp) / "bench.docker.yml"
            plugin_file.write_text(f"plugin: community.docker.docker_containers\ndocker_host: '{engine.url}'\n")
            theirs, (_, output) = median_time(
                lambda: run_process([ansible, "-i", str(plugin_file), "--list"]), args.runs
            )
            listed_by_ansible = ansible_hosts(output)
            if listed_by_ansible != args.containers:
                raise SystemExit(
                    f"ansible-inventory listed {listed_by_ansible} containers, not {args.containers}: the plugin did "
                    "not run"
                )
            print(
                f"ansible-inventory --list (community.docker.docker_containers): {theirs:6.3f} s  "
                f"({listed_by_ansible} containers)"
            )
            their_floor, _ = median_time(lambda: run_process([ansible, "-i", "localhost,", "--list"]), args.runs)
            print(f"  process floor, ansible-inventory -i localhost, --list: {their_floor:6.3f} s")

        speedup = theirs / ours
        print()
        print(
            f"ansible-inventory / inventory sync --once = {speedup:.1f}x  (goal >= {GOAL_SPEEDUP:g}x: "
            f"{'met' if speedup >= GOAL_SPEEDUP else 'NOT met'})"
        )
        print(
            f"  the goal needs the whole process in <= {theirs / GOAL_SPEEDUP:.3f} s; importing sqlalchemy, psycopg "
            "and docker alone "
            f"takes {import_floor:.3f} s ({theirs / import_floor:.1f}x faster than ansible-inventory is the most any "
            "process using them can be)"
        )
        print(f"ansible-inventory / in-process first sync = {theirs / first_sync:.1f}x")
        print(
            f"above each process floor: ansible {theirs - their_floor:.3f} s, ours {ours - our_floor:.3f} s = "
            f"{(theirs - their_floor) / max(ours - our_floor, 1e-9):.1f}x"
        )
        print(
            f"first sync / raw floor = {first_sync / floor:.1f}x;  collect only / raw floor = "
            f"{collect_only / floor:.1f}x"
        )
    finally:
        engine.stop()
        for scratch in databases:
            scratch.drop()


if __name__ == "__main__":
    main()
