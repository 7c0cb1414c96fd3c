"""The state a fake Proxmox VE cluster serves: nodes, guests, pools, and the faults to inject.

Plain mutable dataclasses, so that a test can rename a guest, migrate it, take a
node offline or strip a token's privileges between two polls. What a person does through
the web UI (start, stop, shut down, migrate, create, destroy) goes through the cluster's
methods, which also leave the task Proxmox VE would list in ``/cluster/tasks``. The wire format
(field names, the ``{"data": ...}`` envelope, error reasons) lives in
``server.py``; this module only knows the cluster.
"""

from __future__ import annotations

import itertools
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

GuestKind = Literal["qemu", "lxc"]
# What the QEMU guest agent does when asked for interfaces: answers, is configured but
# not running inside the guest, or is not configured for the VM at all.
AgentMode = Literal["running", "not-running", "disabled", "hung"]
# What the API token may see: everything (PVEAuditor on /), nothing (a privilege-separated
# token without any ACL), or nodes but no guests (Sys.Audit without VM.Audit).
PermissionMode = Literal["full", "none", "nodes-only"]

PVE_VERSION = "8.2.4"
PVE_MANAGER = "pve-manager/8.2.4/faa83925c9641325"
KERNEL = "Linux 6.8.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.8-2 (2024-06-24T09:00Z)"
GIB = 1024**3
MIB = 1024**2


@dataclass
class FakeNode:
    name: str
    ip: str
    online: bool = True
    cpus: int = 32
    memory_bytes: int = 128 * GIB
    # Uptime counts on from here, as a real node's does (a connector must not store it raw).
    booted_at: float = field(default_factory=lambda: time.time() - 864_000)
    cpu_model: str = "AMD EPYC 7302P 16-Core Processor"

    @property
    def uptime(self) -> int:
        return int(time.time() - self.booted_at)


@dataclass
class FakeGuest:
    vmid: int
    kind: GuestKind
    name: str
    node: str
    status: str = "running"  # running | stopped | paused
    template: bool = False
    tags: list[str] = field(default_factory=list)
    pool: str | None = None
    hastate: str | None = None
    lock: str | None = None
    description: str | None = None
    cores: int = 2
    memory_mib: int = 2048
    disk_gib: int = 32
    macs: list[str] = field(default_factory=list)
    # Addresses with prefix length, as the guest reports them ("10.1.2.3/24").
    addresses: list[str] = field(default_factory=list)
    agent: AgentMode = "running"
    smbios_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_at: float = field(default_factory=lambda: time.time() - 3600)

    @property
    def uptime(self) -> int:
        return int(time.time() - self.started_at)


@dataclass
class FakeFaults:
    # Seconds added to every answer (a real pveproxy answers in a few ms, more under load).
    latency: float = 0.0
    # Extra seconds for every call that goes to one node (/nodes/{node}/...).
    slow_nodes: dict[str, float] = field(default_factory=dict)
    # How long an agent "hung" keeps its call waiting before pveproxy gives up (qmp's own timeout).
    hung_agent_seconds: float = 5.0
    # Path regex -> (HTTP status, reason, how many more times; None = always). Status 200
    # answers the reason as a non-JSON body (what a proxy's error page looks like to a client).
    # Status 0 closes the connection without an answer (a reset: pveproxy restarting).
    failures: list[tuple[str, int, str, int | None]] = field(default_factory=list)
    permissions: PermissionMode = "full"
    # Retry-After (seconds) sent with the injected failures of these statuses (429, 503).
    retry_after: dict[int, float] = field(default_factory=dict)

    def fail(
        self, path_pattern: str, status: int = 500, reason: str = "Internal Server Error", times: int | None = None
    ) -> None:
        """Make requests whose path matches ``path_pattern`` (a regex) answer ``status``."""
        self.failures.append((path_pattern, status, reason, times))


# What a task type starts with: qm (QEMU) or vz (LXC), as pve-manager names them (qmstart, vzmigrate).
TASK_PREFIX: dict[str, str] = {"qemu": "qm", "lxc": "vz"}
# A node's task list keeps every running task and this many finished ones (PVE::RESTEnvironment's MAX_FINISHED).
MAX_FINISHED_TASKS = 25
_pids = itertools.count(os.getpid() * 16 % 0x3FFFFF + 0x1000)


@dataclass
class FakeTask:
    """One worker task as a node records it: the fields of its UPID, and how and when it ended."""

    node: str
    type: str  # qmstart, vzstop, qmigrate, vzdump, startall...
    id: str  # the guest's vmid, or "" for a task of no single guest (startall, a backup job of several)
    user: str  # user@realm, or user@realm!tokenname for an API token
    starttime: int = field(default_factory=lambda: int(time.time()))
    pid: int = field(default_factory=lambda: next(_pids))
    # The process start time in clock ticks since boot (/proc/<pid>/stat), as the node reads it.
    pstart: int = field(default_factory=lambda: int(time.monotonic() * 100) & 0xFFFFFFFF)
    endtime: int | None = None
    status: str | None = None  # "OK", "WARNINGS: 1", or the error the task died of

    @property
    def upid(self) -> str:
        """UPID:node:pid:pstart:starttime:type:id:user: with pid, pstart and starttime in hex (PVE::Tools)."""
        return (
            f"UPID:{self.node}:{self.pid:08X}:{self.pstart:08X}:{self.starttime:08X}:{self.type}:{self.id}:{self.user}:"
        )

    @property
    def running(self) -> bool:
        return self.endtime is None

    def finish(self, status: str = "OK") -> FakeTask:
        self.endtime = max(int(time.time()), self.starttime)
        self.status = status
        return self


@dataclass
class FakeCluster:
    # None makes a standalone node: /cluster/status then lists the node only.
    name: str | None
    nodes: list[FakeNode] = field(default_factory=list)
    guests: list[FakeGuest] = field(default_factory=list)
    pools: dict[str, str] = field(default_factory=dict)  # poolid -> comment
    # Every task of every node, oldest first (the API lists what each node still keeps).
    tasks: list[FakeTask] = field(default_factory=list)

    def node(self, name: str) -> FakeNode:
        return next(n for n in self.nodes if n.name == name)

    def guest(self, vmid: int) -> FakeGuest:
        return next(g for g in self.guests if g.vmid == vmid)

    def node_online(self, name: str) -> bool:
        return any(n.name == name and n.online for n in self.nodes)

    # -- what a person does in the web UI: the change, and the task that made it -----------------
    def task(self, node: str, task_type: str, vmid: int | str = "", user: str = "root@pam", *, running: bool = False,
             status: str = "OK") -> FakeTask:  # fmt: skip
        """Record a task (ended with ``status`` unless ``running``)."""
        task = FakeTask(node=node, type=task_type, id=str(vmid), user=user)
        if not running:
            task.finish(status)
        self.tasks.append(task)
        return task

    def _worker(self, node: str, task_type: str, vmid: int, user: str, change: Callable[[], None]) -> FakeTask:
        """As pve-manager runs a change: the task is listed (running) first, the change made, then it ends."""
        task = self.task(node, task_type, vmid, user, running=True)
        change()
        return task.finish()

    def start_guest(self, vmid: int, user: str = "root@pam") -> FakeTask:
        guest = self.guest(vmid)

        def start() -> None:
            guest.status, guest.started_at = "running", time.time()

        return self._worker(guest.node, f"{TASK_PREFIX[guest.kind]}start", vmid, user, start)

    def stop_guest(self, vmid: int, user: str = "root@pam") -> FakeTask:
        guest = self.guest(vmid)
        return self._worker(guest.node, f"{TASK_PREFIX[guest.kind]}stop", vmid, user, lambda: _stop(guest))

    def shutdown_guest(self, vmid: int, user: str = "root@pam") -> FakeTask:
        guest = self.guest(vmid)
        return self._worker(guest.node, f"{TASK_PREFIX[guest.kind]}shutdown", vmid, user, lambda: _stop(guest))

    def migrate_guest(self, vmid: int, target: str, user: str = "root@pam") -> FakeTask:
        """Move a guest to another node; the task runs on the node it leaves (qmigrate, vzmigrate)."""
        guest = self.guest(vmid)

        def move() -> None:
            guest.node = target

        return self._worker(guest.node, "qmigrate" if guest.kind == "qemu" else "vzmigrate", vmid, user, move)

    def create_guest(self, guest: FakeGuest, user: str = "root@pam") -> FakeTask:
        return self._worker(
            guest.node, f"{TASK_PREFIX[guest.kind]}create", guest.vmid, user, lambda: self.guests.append(guest)
        )

    def destroy_guest(self, vmid: int, user: str = "root@pam") -> FakeTask:
        guest = self.guest(vmid)
        return self._worker(
            guest.node, f"{TASK_PREFIX[guest.kind]}destroy", vmid, user, lambda: self.guests.remove(guest)
        )

    def power_off(self, name: str) -> None:
        """The node goes down (no task: its guests keep their config, the cluster lists them as unknown)."""
        self.node(name).online = False

    def power_on(self, name: str) -> None:
        """The node boots again: online, its uptime counting from now."""
        node = self.node(name)
        node.online, node.booted_at = True, time.time()

    def listed_tasks(self) -> list[FakeTask]:
        """What each node still lists: its running tasks and its most recent finished ones, newest first."""
        listed: list[FakeTask] = []
        for node in self.nodes:
            tasks = [t for t in reversed(self.tasks) if t.node == node.name]  # appended as they started
            running = [t for t in tasks if t.running]
            finished = [t for t in tasks if not t.running][: max(0, MAX_FINISHED_TASKS - len(running))]
            listed.extend(running + finished)
        return listed


def _stop(guest: FakeGuest) -> None:
    guest.status = "stopped"


def mac_for(vmid: int, index: int = 0) -> str:
    # BC:24:11 is the prefix Proxmox VE uses for generated MAC addresses.
    return f"BC:24:11:{(vmid >> 8) & 0xFF:02X}:{vmid & 0xFF:02X}:{index:02X}"


def build_cluster(
    *,
    name: str | None = "lab",
    nodes: int = 3,
    guests: int = 30,
    seed: int = 4,
    pools: int = 4,
    duplicate_name_every: int = 50,
) -> FakeCluster:
    """A deterministic cluster of the given scale with a realistic mix of guests.

    About 70% VMs and 30% containers; some templates, stopped guests, HA-managed and
    locked guests; VMs whose agent is not running or not configured; guests in pools;
    and every ``duplicate_name_every``-th guest reusing an earlier guest's name on
    another node (names are not identities).
    """
    rng = random.Random(seed)
    cluster = FakeCluster(name=name)
    for index in range(nodes):
        cluster.nodes.append(FakeNode(name=f"pve{index + 1}", ip=f"10.0.0.{index + 1}"))
    pool_ids = [f"pool{index + 1}" for index in range(pools)]
    cluster.pools = {pool_id: f"pool number {index + 1}" for index, pool_id in enumerate(pool_ids)}
    tag_choices = ["prod", "staging", "web", "db", "k8s", "backup", "monitoring"]
    for index in range(guests):
        vmid = 100 + index
        kind: GuestKind = "lxc" if rng.random() < 0.3 else "qemu"
        node = cluster.nodes[index % nodes].name
        guest_name = f"{'ct' if kind == 'lxc' else 'vm'}-{index:04d}"
        if duplicate_name_every and index and index % duplicate_name_every == 0:
            guest_name = cluster.guests[index - 1].name  # the previous guest sits on another node
        template = rng.random() < 0.04
        status = "stopped" if template or rng.random() < 0.1 else "running"
        guest = FakeGuest(
            vmid=vmid,
            kind=kind,
            name=guest_name,
            node=node,
            status=status,
            template=template,
            tags=sorted(rng.sample(tag_choices, rng.randint(0, 2))),
            pool=rng.choice(pool_ids) if pool_ids and rng.random() < 0.35 else None,
            hastate="started" if rng.random() < 0.1 else None,
            lock="backup" if rng.random() < 0.02 else None,
            description=f"guest {vmid}" if rng.random() < 0.3 else None,
            cores=rng.choice([1, 2, 4, 8]),
            memory_mib=rng.choice([512, 1024, 2048, 4096, 8192]),
            disk_gib=rng.choice([8, 16, 32, 64]),
            macs=[mac_for(vmid)],
            addresses=[f"10.{(vmid >> 8) & 0xFF}.{vmid & 0xFF}.10/24", f"fd00::{vmid:x}/64"],
            agent=(
                "disabled"
                if kind == "qemu" and rng.random() < 0.1
                else "not-running"
                if kind == "qemu" and rng.random() < 0.1
                else "running"
            ),
            smbios_uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        )
        cluster.guests.append(guest)
    return cluster
