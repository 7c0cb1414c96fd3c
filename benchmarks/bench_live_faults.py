"""Live sources under faults: nothing lost. One run of the whole product following its three sources, through
a sequence of faults, each with changes made at the far side while it lasts.

    .venv/bin/python benchmarks/bench_live_faults.py [--engine sqlite|postgresql] [--db-away 30]
        [--faults cut,gone,apiserver,dockerd,node,database]

The product is the sync loop (``SyncLoop``, as ``inventory sync`` runs it) following the demo's lab
(inventory/demo.py: fake Kubernetes and Proxmox VE APIs on loopback) and a real private Docker engine
(inventory/testing/docker_engine.py) with their ``LiveSource``. The faults, in this order:

- ``cut``: every Kubernetes watch connection cut (a load balancer's reset); a deployment relabelled and a
  pod replaced before the watch reconnects;
- ``gone``: the watches cut and the API server's history expired, so that the watch resumes into a 410 Gone;
  the changes are made in between (only a relist can see them);
- ``apiserver``: the API server stopped for 5 s and started again; the changes are made while it is down;
- ``dockerd``: a container stopped and, mid-stream, dockerd restarted (its running containers stop with it,
  the one with a restart policy starts again); a container created and started right after;
- ``node``: a Proxmox node powered off for a few polls and on again; a guest on another node stopped meanwhile;
- ``database``: the database away for ``--db-away`` seconds (PostgreSQL: the product reaches it through a
  loopback TCP proxy, which drops every connection and refuses new ones; the server itself is never touched.
  SQLite: another connection holds an exclusive lock), with a change on each of the three sources meanwhile.

Printed per fault: the deltas the watches wrote while it lasted and after, the watch sessions and full syncs it
cost, what the product logged (the fallback it took), whether every change made during it is in the changes
table (``queries.list_changes``) before any repair, and the ``drift_repaired`` of a full sync run on each source
concerned once its watch is back (goal: 0, the stream and its fallbacks missed nothing).
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import re
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
POSTGRES_ADMIN_URL = os.environ.get("INVENTORY_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
FAULTS = ("cut", "gone", "apiserver", "dockerd", "node", "database")
VISIBLE_WAIT = 240.0  # a change must be in the changes table this long after its fault ended
DRIFT_WAIT = 300.0  # the watch back and a full sync run


class CuttableProxy:
    """A loopback TCP proxy the product reaches the database through; ``cut()`` drops every connection and
    refuses new ones (accepted, then closed at once) until ``restore()``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.cut_off = threading.Event()
        self._closing = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="db-proxy", daemon=True).start()

    def cut(self) -> None:
        self.cut_off.set()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def restore(self) -> None:
        self.cut_off.clear()

    def close(self) -> None:
        self._closing.set()
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.cut_off.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class LogCapture(logging.Handler):
    """What the product says while a fault lasts: the watches' and the live runners' messages."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("connectors", "inventory.live", "inventory.loop")):
            # One line per kind of message: the watch of each Kubernetes kind says the same thing.
            line = re.sub(r"watch of [\w./-]+", "watch of <kind>", record.getMessage().splitlines()[0])
            self.lines.append(re.sub(r"reconnecting in [\d.]+s", "reconnecting", line)[:200])


@dataclass
class Fault:
    name: str
    sources: tuple[str, ...]
    act: Callable[[], list[tuple[str, str]]]  # makes the fault and the changes; returns (source, name) changed
    changed: list[tuple[str, str]] = field(default_factory=list)


def last_change_id(db: Any) -> int:
    from sqlalchemy import func, select

    from inventory.storage.models import Change

    with db.session() as session:
        return int(session.scalar(select(func.max(Change.id))) or 0)


def missing_changes(db: Any, after: int, expected: list[tuple[str, str]]) -> list[tuple[str, str]]:
    from inventory.queries import list_changes

    with db.session() as session:
        rows = list_changes(session, since=EPOCH, after_id=after)
    seen = {(row["source"], row["name"]) for row in rows}
    return [change for change in expected if change not in seen]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    print(f"  (waited {timeout:g}s for {what}: not so)")
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--db-away", type=float, default=30.0, help="seconds the database is away")
    parser.add_argument("--faults", default=",".join(FAULTS), help="which, comma-separated, in the order above")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.faults.split(",") if name.strip()]
    unknown = set(chosen) - set(FAULTS)
    if unknown:
        raise SystemExit(f"--faults: unknown {', '.join(sorted(unknown))} (choose from {', '.join(FAULTS)})")

    import yaml
    from sqlalchemy.engine import make_url

    from inventory.config import load_config
    from inventory.connector import ConnectorRegistry
    from inventory.demo import DemoLab
    from inventory.loop import SyncLoop
    from inventory.queries import list_changes
    from inventory.storage.database import open_database
    from inventory.testing.docker_engine import BUSYBOX_IMAGE, make_busybox_image, start_engine
    from inventory.testing.scratch_postgres import ScratchDatabase

    capture = LogCapture()
    logging.getLogger().addHandler(capture)
    for name in ("connectors", "inventory"):
        logging.getLogger(name).setLevel(logging.INFO)

    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-live-faults-")))
        proxy: CuttableProxy | None = None
        if args.engine == "postgresql":
            url = stack.enter_context(ScratchDatabase(POSTGRES_ADMIN_URL, prefix="bench_live_faults")).url
            parsed = make_url(url)
            proxy = CuttableProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
            stack.callback(proxy.close)
            product_url = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        else:
            url = product_url = f"sqlite:///{workdir / 'inventory.db'}"
        lab = stack.enter_context(DemoLab(workdir / "lab"))
        engine = start_engine()
        stack.callback(engine.stop)
        client = engine.client(timeout=60)
        stack.callback(client.close)
        make_busybox_image(client)
        # A shell that ends on SIGTERM (busybox as PID 1 ignores it): dockerd's shutdown stops them at once.
        command = ["sh", "-c", "trap 'exit 143' TERM; sleep 86400 & wait"]
        for name, policy in (("bench-0", None), ("bench-1", None), ("bench-2", None), ("bench-always", "always")):
            host_config = client.create_host_config(
                network_mode="none", restart_policy={"Name": policy} if policy else None
            )
            client.start(client.create_container(BUSYBOX_IMAGE, command, name=name, host_config=host_config)["Id"])

        config_path = lab.write_config(product_url)
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        config["sources"][0]["poll_interval"] = "2s"
        config["sources"][2]["url"] = engine.url
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        registry = ConnectorRegistry.discover()
        loaded = load_config(config_path, registry=registry)
        check_db = open_database(url, migrate=True)  # the benchmark's own view, never through the proxy
        stack.callback(check_db.dispose)
        db = open_database(product_url, migrate=False)
        stack.callback(db.dispose)
        loop = SyncLoop(db, loaded, registry, jitter=0, coordinate=False)
        runner = threading.Thread(target=loop.run, name="loop", daemon=True)
        runner.start()

        def stop_loop() -> None:
            if proxy is not None:
                proxy.restore()
            loop.request_stop()
            runner.join(60)

        stack.callback(stop_loop)
        live = {source.name: source for source in loop.live}

        def all_watching() -> bool:
            return all(source.stats.state == "watching" for source in loop.live)

        if not wait_for(all_watching, 120, "every source watching"):
            raise SystemExit(f"not watching: {[(s.name, s.stats.state) for s in loop.live]}")
        began = time.monotonic()

        # --- the changes made at the far side --------------------------------------------------------

        kubernetes, cluster = lab.kubernetes, lab.proxmox.cluster

        def relabel(tag: str) -> tuple[str, str]:
            def change(obj: dict[str, Any]) -> None:
                obj["metadata"]["labels"] = {**(obj["metadata"].get("labels") or {}), "bench/fault": tag}

            kubernetes.mutate("deployments", "web-0", "app-000", change, manager="kubectl-client-side-apply")
            return ("k3s", "web-0")

        def replace_pod(tag: str) -> list[tuple[str, str]]:
            from connectors.kubernetes.fake.objects import object_uid

            old = next(
                p
                for p in kubernetes.objects.items["pods"]
                if p["metadata"]["namespace"] == "app-000" and p["metadata"]["name"].startswith("web-0-")
            )
            new = copy.deepcopy(old)
            name = f"web-0-{tag}"
            new["metadata"]["name"] = name
            new["metadata"]["uid"] = object_uid("homelab", "pod", "app-000", name)
            new["metadata"].pop("managedFields", None)
            kubernetes.put("pods", new, manager="kube-controller-manager", operation="Update")
            kubernetes.remove("pods", "app-000", old["metadata"]["name"])
            return [("k3s", name), ("k3s", old["metadata"]["name"])]

        def kubernetes_changes(tag: str) -> list[tuple[str, str]]:
            return [relabel(tag), *replace_pod(tag)]

        def toggle_guest(vmid: int) -> tuple[str, str]:
            guest = cluster.guest(vmid)
            if guest.status == "running":
                cluster.stop_guest(vmid, user="root@pam")
            else:
                cluster.start_guest(vmid, user="root@pam")
            return ("pve", guest.name)

        def toggle_container(name: str) -> tuple[str, str]:
            if client.inspect_container(name)["State"]["Running"]:
                client.stop(name, timeout=0)
            else:
                client.start(name)
            return ("docker01", name)

        # --- the faults ----------------------------------------------------------------------------------

        def cut() -> list[tuple[str, str]]:
            wait_for(lambda: kubernetes.watches_open() > 0, 30, "the Kubernetes watches open")
            kubernetes.cut_watches()
            return kubernetes_changes("cut")

        def gone() -> list[tuple[str, str]]:
            wait_for(lambda: kubernetes.watches_open() > 0, 30, "the Kubernetes watches open")
            kubernetes.cut_watches()
            changed = kubernetes_changes("gone")
            kubernetes.expire_history()
            return changed

        def apiserver() -> list[tuple[str, str]]:
            changed: list[tuple[str, str]] = []
            kubernetes.restart(down=5.0, while_down=lambda: changed.extend(kubernetes_changes("down")))
            return changed

        def dockerd() -> list[tuple[str, str]]:
            changed = [toggle_container("bench-1")]  # its events are on their way as dockerd goes down
            engine.restart()
            changed += [("docker01", "bench-0"), ("docker01", "bench-2"), ("docker01", "bench-always")]
            created = client.create_container(
                BUSYBOX_IMAGE, command, name="fault-new", host_config=client.create_host_config(network_mode="none")
            )
            client.start(created["Id"])
            return [*changed, ("docker01", "fault-new")]

        def node() -> list[tuple[str, str]]:
            interval = 2.0
            cluster.power_off("pve3")
            time.sleep(2 * interval)  # two polls see it offline
            changed = [("pve", "pve3"), toggle_guest(113)]  # nextcloud, on pve2
            time.sleep(2 * interval)
            cluster.power_on("pve3")
            return changed

        def database() -> list[tuple[str, str]]:
            holder: sqlite3.Connection | None = None
            if proxy is not None:
                proxy.cut()
            else:
                holder = sqlite3.connect(str(workdir / "inventory.db"), timeout=30, isolation_level=None)
                holder.execute("BEGIN EXCLUSIVE")
            try:
                time.sleep(2.0)  # the product notices first: its next delta or beat finds the database away
                changed = [*kubernetes_changes("db"), toggle_guest(111), toggle_container("bench-0")]
                time.sleep(max(0.0, args.db_away - 2.0))
            finally:
                if proxy is not None:
                    proxy.restore()
                elif holder is not None:
                    holder.execute("ROLLBACK")
                    holder.close()
            return changed

        acts = {"cut": cut, "gone": gone, "apiserver": apiserver, "dockerd": dockerd, "node": node}
        acts["database"] = database
        concerned = {
            "cut": ("k3s",),
            "gone": ("k3s",),
            "apiserver": ("k3s",),
            "dockerd": ("docker01",),
            "node": ("pve",),
            "database": ("k3s", "pve", "docker01"),
        }
        print(
            f"live faults, {args.engine}: lab (demo scale; Proxmox poll_interval 2s) and a real private dockerd; "
            f"every source watching after {time.monotonic() - began + 0:.1f}s more"
        )

        def settle(db: Any, quiet: float = 6.0, longest: float = 90.0) -> None:
            """Until no change row lands for ``quiet`` seconds (three Proxmox polls): the faults' last changes are
            written, so that the full sync below finds nothing on its way (that would count as drift)."""
            deadline, last, still_since = time.monotonic() + longest, last_change_id(db), time.monotonic()
            while time.monotonic() < deadline and time.monotonic() - still_since < quiet:
                time.sleep(0.5)
                now = last_change_id(db)
                if now != last:
                    last, still_since = now, time.monotonic()

        def all_visible(mark: int, changed: list[tuple[str, str]]) -> Callable[[], bool]:
            return lambda: not missing_changes(check_db, mark, changed)

        def drift_of(source: Any) -> int | str:
            """A full sync counted as drift, run by the source's own runner once it watches again."""
            wait_for(lambda: source.stats.state == "watching", DRIFT_WAIT, f"{source.name} watching")
            count = source.stats.drift_syncs
            source.full_sync_interval = 0.0  # due now: the runner starts it once its queue is empty
            deadline = time.monotonic() + DRIFT_WAIT
            while source.stats.state != "syncing" and source.stats.drift_syncs == count:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            source.full_sync_interval = 3600.0  # one full sync, not one after the other
            ran = wait_for(lambda: source.stats.drift_syncs > count, DRIFT_WAIT, "the full sync")
            return source.stats.last_drift if ran and source.stats.last_drift is not None else "not run"

        lost = 0
        for name in chosen:
            names = concerned[name]
            mark = last_change_id(check_db)
            before = {n: copy.copy(live[n].stats) for n in names}
            errors_before = {n: len(live[n].stats.errors) for n in names}
            capture.lines.clear()
            started = time.monotonic()
            changed = acts[name]()
            lasted = time.monotonic() - started
            visible = wait_for(all_visible(mark, changed), VISIBLE_WAIT, "the changes")
            seen_after = time.monotonic() - started
            missing = missing_changes(check_db, mark, changed)
            settle(check_db)
            fallback = [line for line in dict.fromkeys(capture.lines) if any(n in line for n in names)]
            during = {n: copy.copy(live[n].stats) for n in names}
            drift_mark = last_change_id(check_db)
            drift: dict[str, Any] = {}
            for source_name in names:  # a full sync of each concerned source, once its watch is back
                source = live[source_name]
                drift[source_name] = drift_of(source)
            lost += sum(value for value in drift.values() if isinstance(value, int)) + len(missing)
            print(f"fault {name}: lasted {lasted:.1f}s; its changes visible after {seen_after:.1f}s")
            for source_name in names:
                stats, old = during[source_name], before[source_name]
                print(
                    f"  {source_name}: deltas written {stats.deltas - old.deltas} "
                    f"({stats.changed - old.changed} objects changed); "
                    f"watch sessions +{stats.sessions - old.sessions}, "
                    f"full syncs +{stats.full_syncs - old.full_syncs}; "
                    f"watch errors: {list(stats.errors)[errors_before[source_name] :] or 'none'}"
                )
            print("  the product said: " + (" | ".join(fallback[:8]) if fallback else "nothing"))
            print(
                f"  changes made during it: {len(changed)}; in the changes table before any repair: "
                f"{len(changed) - len(missing)}/{len(changed)}" + (f" (missing: {missing})" if not visible else "")
            )
            print(
                "  full sync after it, drift_repaired: "
                + ", ".join(f"{n} {value}" for n, value in drift.items())
                + " (goal 0)"
            )
            with check_db.session() as session:
                repaired = [r for r in list_changes(session, since=EPOCH, after_id=drift_mark) if r["source"] in names]
            if repaired:
                print(
                    "  what it repaired: "
                    + "; ".join(
                        f"{r['source']} {r['object_type']} {r['name']} {r['action']} [{r['fields']}]"
                        for r in repaired[:10]
                    )
                )
        print(
            f"total: {lost} lost (drift repaired + changes missing) over {len(chosen)} faults; "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )


if __name__ == "__main__":
    main()
