"""Who changed a guest: the tasks of ``/cluster/tasks`` (no I/O here), matched to the guests that changed.

Every change made through the web UI, the API or ``qm``/``pct`` runs as a task whose UPID names the
node, the type (qmstart, vzstop, qmigrate, qmdestroy...), the guest's vmid and the user
(``user@realm``, or ``user@realm!token`` for an API token). The cluster lists what each node keeps:
its running tasks and its 25 most recent finished ones (pve-manager), to a caller with Sys.Audit on /
(without it, only the caller's own).

A task that names the guest is its change's cause. A task of no single guest (startall, stopall,
migrateall, suspendall, a backup job of several guests) on the guest's node, or a clone (whose id is
the guest cloned from) next to a guest that appeared, is matched by time only: ``inferred``. No task,
no cause: the change reads as unknown, never as a guess.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from inventory.cause import Cause, CauseKind

# Tasks of several guests at once, whose UPID names no vmid: matched to a changed guest of their node by time.
BULK_TASKS = frozenset({"startall", "stopall", "migrateall", "suspendall", "vzdump"})
# A clone's task names the guest cloned from; the new guest is matched to it by time.
CLONE_TASKS = frozenset({"qmclone", "vzclone"})
# What a finished task's status says when all went well (anything else is shown with the cause).
TASK_OK = "OK"


@dataclass(frozen=True, slots=True)
class Task:
    upid: str
    node: str
    type: str
    vmid: str  # "" when the task names no guest
    actor: str  # user@realm, or user@realm!token
    starttime: int | None
    endtime: int | None  # None while it runs
    status: str | None

    @property
    def running(self) -> bool:
        return self.endtime is None

    @property
    def when(self) -> int:
        """The moment that orders tasks: when it ended, or when it started for one still running."""
        return self.endtime if self.endtime is not None else (self.starttime or 0)


def parse_upid(upid: str) -> dict[str, str] | None:
    """``UPID:node:pid:pstart:starttime:type:id:user:`` -> its fields (pid, pstart, starttime in hex)."""
    parts = upid.split(":")
    if len(parts) != 9 or parts[0] != "UPID" or parts[8] != "":
        return None
    keys = ("node", "pid", "pstart", "starttime", "type", "id", "user")
    return dict(zip(keys, parts[1:8], strict=True))


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_tasks(answer: Iterable[Mapping[str, Any]]) -> list[Task]:
    """The tasks of a /cluster/tasks answer; an entry without a readable UPID is skipped."""
    tasks = []
    for entry in answer:
        upid = entry.get("upid")
        if not isinstance(upid, str) or (fields := parse_upid(upid)) is None:
            continue
        user = str(entry.get("user") or fields["user"])
        # pve-manager splits a token's task user into user and tokenid: put them back together.
        if entry.get("tokenid") and "!" not in user:
            user = f"{user}!{entry['tokenid']}"
        started = _int(entry.get("starttime"))
        if started is None:
            try:
                started = int(fields["starttime"], 16)
            except ValueError:
                started = None
        tasks.append(
            Task(
                upid=upid,
                node=str(entry.get("node") or fields["node"]),
                type=str(entry.get("type") or fields["type"]),
                vmid=str(entry.get("id") if entry.get("id") is not None else fields["id"]),
                actor=user,
                starttime=started,
                endtime=_int(entry.get("endtime")),
                status=str(entry["status"]) if entry.get("status") is not None else None,
            )
        )
    return tasks


def task_cause(task: Task, *, inferred: bool = False) -> Cause:
    """The cause a task tells: its user, its type, its UPID, when it ended (or began, while running)."""
    detail: dict[str, Any] = {}
    if task.running:
        detail["state"] = "running"
    elif task.status and task.status != TASK_OK:
        detail["status"] = task.status
    return Cause(
        CauseKind.PROXMOX_TASK,
        actor=task.actor,
        action=task.type,
        ref=task.upid,
        at=datetime.fromtimestamp(task.when, UTC) if task.when else None,
        inferred=inferred,
        detail=detail,
    )


class TaskIndex:
    """The tasks of one window (since the last poll, or the recent past for a full sync), by guest and node.

    ``late``: tasks that ended before the window, shortly before (the cluster list shows a guest's new
    status some seconds after its task ended): one naming a changed guest is its cause, inferred.
    """

    def __init__(self, tasks: Iterable[Task], late: Iterable[Task] = ()) -> None:
        self.by_vmid: dict[str, list[Task]] = {}
        self.late_by_vmid: dict[str, list[Task]] = {}
        self.bulk_by_node: dict[str, list[Task]] = {}
        self.clones_by_node: dict[str, list[Task]] = {}
        for task, stated in [*((t, True) for t in tasks), *((t, False) for t in late)]:
            if task.type in CLONE_TASKS:  # names the source guest (locked while it is copied); the copy is new
                self.clones_by_node.setdefault(task.node, []).append(task)
            if task.vmid:
                (self.by_vmid if stated else self.late_by_vmid).setdefault(task.vmid, []).append(task)
            elif task.type in BULK_TASKS:
                self.bulk_by_node.setdefault(task.node, []).append(task)

    def names(self, vmid: int | str) -> bool:
        """Whether a task of the window names this guest (its details may have changed without its list row)."""
        return str(vmid) in self.by_vmid

    def cause_for(
        self, vmid: int | str, nodes: Iterable[str], *, new: bool = False, used: Collection[str] = ()
    ) -> Cause | None:
        """The cause of a change of guest ``vmid`` on ``nodes`` (where it is and where it was), if a task tells.

        ``used``: UPIDs already given as the cause of an earlier change of this guest (not given again).
        """
        named = [task for task in self.by_vmid.get(str(vmid), ()) if task.upid not in used]
        if named:
            return task_cause(_latest(named))
        nodes = set(nodes)
        nearby = [task for task in self.late_by_vmid.get(str(vmid), ()) if task.upid not in used]
        nearby += [task for node in nodes for task in self.bulk_by_node.get(node, ())]
        if new:
            nearby += [task for node in nodes for task in self.clones_by_node.get(node, ())]
        return task_cause(_latest(nearby), inferred=True) if nearby else None


def _latest(tasks: list[Task]) -> Task:
    return max(tasks, key=lambda task: (task.when, task.starttime or 0))


def recent(tasks: Iterable[Task], since: float) -> list[Task]:
    """Tasks running, or ended at or after ``since`` (seconds since the epoch, the cluster's clock)."""
    return [task for task in tasks if task.running or (task.endtime is not None and task.endtime >= since)]
