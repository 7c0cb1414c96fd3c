"""Proxmox VE: every node, VM and LXC container of a cluster, with addresses, tags and pools.

    - type: proxmox
      name: pve
      url: https://pve.lan:8006
      token_id: "inventory@pve!ro"            # a PVEAuditor token is enough
      token_secret_file: /run/secrets/pve
      ca_file: /etc/pve/pve-root-ca.pem        # or fingerprint: "AB:CD:...", or verify_tls: false

A poll makes few calls: ``/cluster/status`` (the cluster's name, which is the
identity) and ``/cluster/resources`` (every node, guest and pool, with each
guest's node, status, tags, pool and HA state) once each; then, with bounded
concurrency, ``/nodes/{node}/status`` per online node and, per guest, its config
(SMBIOS uuid, MACs, disks, description) and its addresses (the QEMU guest agent
or the container's interfaces) when it runs.

Identity is ``{cluster}/{vmid}``: two guests may share a name, a renamed guest
stays one object, and a migrated guest changes its host, not its identity.

``/cluster/resources`` is the complete list of nodes, guests and pools (the scopes
read): a guest missing from it is gone, whatever else failed. A powered-off node is
data, not a failure: it shows ``offline``, its guests ``unknown`` with what the cluster
list says of them, and the run stays a success with a warning. A detail call that
fails (a node's status, a guest's config or addresses) keeps that detail's last known
value (``unread``). A token that sees no guests for want of privileges says so
instead of passing for an empty cluster, and then removes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import TYPE_CHECKING, Any, ClassVar

from connectors.proxmox.api import ApiCallFailed, ProxmoxClient, open_client
from connectors.proxmox.config import TYPE_NAME, ProxmoxConfig
from connectors.proxmox.guests import GuestResult, add_guest, read_guest_details
from connectors.proxmox.records import (
    guest_id,
    guest_records,
    host_kind,
    node_host,
    node_id,
    pool_services,
)
from connectors.proxmox.tasks import Task, TaskIndex, parse_tasks, recent, task_cause
from inventory.cause import Cause
from inventory.connector import Connector, KindVocabulary, SourceConfig, StatusVocabulary
from inventory.cutoff import Cutoff
from inventory.errors import SourceError
from inventory.records import Host, ObjectKey, Scope, Service, Snapshot, Workload, record_hash
from inventory.timeutil import utcnow

if TYPE_CHECKING:
    from inventory.policy.tools import ToolSpec

log = logging.getLogger(__name__)

GUEST_TYPES = ("qemu", "lxc")
# What /cluster/resources answers completely besides the nodes: every guest (as a workload and,
# unless a template, as a host) and every pool.
GUEST_SCOPES = (
    Scope("workload", "qemu"),
    Scope("workload", "lxc"),
    Scope("host", "vm"),
    Scope("host", "lxc"),
    Scope("service", "pool"),
)
_PRIVILEGE_HINT = "grant the PVEAuditor role on / to the token (a privilege-separated token needs its own ACL entry)"


# How Proxmox cloud controllers name a guest in a Kubernetes node's spec.providerID.
PROVIDER_SCHEME = "proxmox://"


class ProxmoxConnector(Connector):
    type_name = TYPE_NAME
    config_model = ProxmoxConfig
    sdk_modules = ("requests", "proxmoxer", "proxmoxer.backends.https", "proxmoxer.core")
    # A guest is a machine other sources see as a host: `impact NAME` tries guests first.
    machine_kinds = ("qemu", "lxc")
    provider_keys = ("cluster", "vmid", "provider_id")
    config: ProxmoxConfig
    # No change stream in Proxmox VE: watch() polls the one-call cluster list and reads details of what changed.
    streams = True
    # Node and guest states as /cluster/resources reports them.
    statuses: ClassVar[StatusVocabulary] = StatusVocabulary(
        running={"running", "online"},
        stopped={"stopped", "paused", "suspended", "offline"},
        failed={"unknown"},
        inert={"template"},  # a template never runs: no machine to reach, neither stopped nor failed
    )
    # A QEMU guest is a "qemu" workload and its guest OS a "vm" host: one word finds both, as does "lxc" / "ct".
    kinds: ClassVar[KindVocabulary] = KindVocabulary(
        ("vm", "qemu", "kvm", "vms"), ("lxc", "ct"), ("node", "nodes"), ("pool", "pools")
    )

    @classmethod
    def provider_id(cls, attributes: Mapping[str, Any]) -> str | None:
        """The id a Proxmox cloud controller gives a guest's Kubernetes node: ``proxmox://<cluster>/<vmid>``."""
        cluster, vmid = attributes.get("cluster"), attributes.get("vmid")
        if cluster and vmid is not None:
            return f"{PROVIDER_SCHEME}{cluster}/{vmid}".lower()
        return super().provider_id(attributes)

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        # Calls made by the last collect(), for benchmarks and the log line.
        self.last_call_count = 0

    @classmethod
    def tools(cls) -> Sequence[ToolSpec]:
        from connectors.proxmox.tools import TOOLS

        return TOOLS

    def collect(self) -> Snapshot:
        started = time.perf_counter()
        client = open_client(self.config, self.cutoff)
        try:
            snapshot = self._collect(client)
        finally:
            self.last_call_count = client.calls
            client.close()
        log.info(
            "source %r: %d hosts, %d workloads, %d services in %d API calls, %.2fs%s",
            self.source_name, len(snapshot.hosts), len(snapshot.workloads), len(snapshot.services),
            client.calls, time.perf_counter() - started, "" if snapshot.complete else " (incomplete)",
        )  # fmt: skip
        return snapshot

    def _unreadable(self, exc: ApiCallFailed) -> SourceError:
        """The whole source is unreadable: say why, in terms the operator can act on."""
        message = exc.message
        if exc.unauthenticated:
            message = f"{message}: the API token or user was rejected (check token_id and its secret)"
        elif exc.permission_denied:
            message = f"{message}: permission denied; {_PRIVILEGE_HINT}"
        return SourceError(self.source_name, exc.resource, message)

    def _forbidden(self, exc: ApiCallFailed) -> Snapshot:
        """Credentials that may read nothing of the cluster (/cluster/status wants Sys.Audit on /): nothing
        readable, not an empty cluster. The core makes the run ``forbidden``: rows kept, not fresh."""
        snapshot = Snapshot()
        if self.config.token_id:
            who, subject = f"the token {self.config.token_id}", f"--tokens '{self.config.token_id}'"
        else:
            who, subject = f"the user {self.config.user}", f"--users '{self.config.user}'"
        snapshot.forbid(
            [Scope("host", "node"), *GUEST_SCOPES],
            exc.resource,
            f"permission denied: {exc.message}",
            grant=(
                f"{who} may read nothing of the cluster ({exc.message}): grant it the PVEAuditor role "
                f"(Sys.Audit, VM.Audit, Pool.Audit) on /, e.g. pveum acl modify / {subject} --roles PVEAuditor "
                "(a privilege-separated token needs its own ACL entry, besides its user's)"
            ),
        )
        return snapshot

    def _collect(self, client: ProxmoxClient) -> Snapshot:
        try:
            status, resources = self._read_cluster(client)
        except ApiCallFailed as exc:
            if exc.permission_denied and exc.resource == "cluster status":
                return self._forbidden(exc)
            raise self._unreadable(exc) from exc
        snapshot, tasks = self._full_snapshot(client, status, resources)
        if tasks is not None:
            attribute_full(snapshot, TaskIndex(recent(tasks, time.time() - self._task_window())))
        return snapshot

    def _task_window(self) -> float:
        """How far back a full sync looks for the tasks that explain its changes: the source's sync interval."""
        from inventory.config import SyncSettings  # the loop's default interval, declared once there

        return float(self.config.interval or SyncSettings.model_fields["interval"].default)

    @staticmethod
    def _read_cluster(client: ProxmoxClient) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        status = client.get_list("cluster status", "cluster/status")
        return status, client.get_list("cluster resources", "cluster/resources")

    def _full_snapshot(
        self, client: ProxmoxClient, status: list[dict[str, Any]], resources: list[dict[str, Any]]
    ) -> tuple[Snapshot, list[Task] | None]:
        """Everything collect() builds from the two cluster answers, and the recent tasks (None: unreadable)."""
        now = utcnow()
        cluster = cluster_identity(status)
        if cluster is None:
            raise SourceError(self.source_name, "cluster status", "the answer names neither a cluster nor a node")
        snapshot = Snapshot(identity=cluster)

        nodes = [r for r in resources if r.get("type") == "node" and r.get("node")]
        guests = [r for r in resources if r.get("type") in GUEST_TYPES and r.get("vmid") is not None]
        pool_ids = [str(r["pool"]) for r in resources if r.get("type") == "pool" and r.get("pool")]
        guests_visible = bool(guests) or self._check_guest_visibility(client, snapshot)
        if not nodes:
            # Proxmox VE lists every node to any token (without Sys.Audit, only their figures are left out).
            snapshot.fail(
                "nodes",
                "the cluster lists no nodes, which no Proxmox VE cluster does: is url: its API? The token needs "
                "Sys.Audit and VM.Audit on / (the PVEAuditor role) to read the cluster",
            )
        else:
            snapshot.read(Scope("host", "node"))
        if guests_visible:
            # The cluster list is complete: a guest it no longer holds is gone, and so is its pool.
            for scope in GUEST_SCOPES:
                snapshot.read(scope)

        online = {str(n["node"]) for n in nodes if n.get("status") == "online"}
        offline_guests: dict[str, int] = {}
        readable = []
        for guest in guests:
            if str(guest.get("node")) in online:
                readable.append(guest)
            else:
                offline_guests[str(guest.get("node"))] = offline_guests.get(str(guest.get("node")), 0) + 1
                # Its config lives on the unreachable node: what the cluster list says, the rest kept.
                self._add_guest(snapshot, GuestResult(*guest_records(cluster, guest, None, None, addresses_read=False)))
        for node in sorted({str(n["node"]) for n in nodes} - online):
            if not guests_visible:  # the token sees no guests at all: a count of them would be a lie
                snapshot.warn(f"node {node}", "offline")
                continue
            count = offline_guests.get(node, 0)
            snapshot.warn(
                f"node {node}",
                f"offline; its {count} guests are shown as the cluster lists them, their details as last read",
            )

        status_by_node = {str(e.get("name")): e for e in status if e.get("type") == "node"}
        with ThreadPoolExecutor(
            max_workers=self.config.concurrency, thread_name_prefix=f"pve-{self.source_name}"
        ) as pool:
            # Asked beside the details, not before them: the tasks cost the sync no round of its own.
            tasks_future = pool.submit(self._tasks, client)
            node_futures = {name: pool.submit(self._node_status, client, name) for name in sorted(online)}
            guest_futures = [pool.submit(self._guest, client, cluster, g) for g in _interleave_by_node(readable)]
            for resource in nodes:
                name = str(resource["node"])
                details = None
                if name in node_futures:
                    details, error = node_futures[name].result()
                    if error:
                        snapshot.fail(f"node {name} status", error)
                snapshot.hosts.append(node_host(cluster, resource, status_by_node.get(name), details, now))
            for future in guest_futures:
                self._add_guest(snapshot, future.result())
            tasks = tasks_future.result()
        snapshot.services.extend(pool_services(cluster, pool_ids, guests))
        return snapshot, tasks

    def _tasks(self, client: ProxmoxClient, *, say: bool = True) -> list[Task] | None:
        """The cluster's recent tasks; None when they cannot be read (changes then go unattributed, nothing fails)."""
        try:
            return parse_tasks(client.get_list("cluster tasks", "cluster/tasks"))
        except ApiCallFailed as exc:
            log.log(logging.WARNING if say else logging.DEBUG, "source %r: changes not attributed: %s",
                    self.source_name, exc.message)  # fmt: skip
            return None

    # -- following changes ------------------------------------------------------------------------
    def watch(self, stop: threading.Event) -> Iterator[Snapshot]:
        """Poll /cluster/resources and /cluster/tasks every ``poll_interval``; yield what changed.

        Proxmox VE has no change stream. The first poll is a full collection (the snapshot reads the
        scopes collect() reads); later polls compare each row of /cluster/resources with the last one
        on the fields collect() stores (never cpu, mem, uptime, netin...), and read details (config,
        addresses, a node's status) only of the guests and nodes whose row changed, that a task of the
        window names, or whose last read after a change came back incomplete (an agent not up yet,
        read again after 1, 2, 4... polls, up to five minutes apart). Records are built by the code
        collect() uses; one equal to what was last yielded is not yielded again. A guest gone from the
        list is deleted; guests of an offline node are what the cluster list says, as in collect().

        A poll that fails is tried again at the next tick. Credentials rejected twice in a row or refused,
        guests hidden by a lost privilege, or polls failing for a minute (or five intervals) raise a
        SourceError: the core then runs full syncs.
        """
        interval = float(self.config.poll_interval)
        give_up = max(_GIVE_UP_SECONDS, 5 * interval)
        state: _WatchState | None = None
        client: ProxmoxClient | None = None
        failing_since: float | None = None
        rejected = False
        try:
            while not stop.is_set():
                began = time.monotonic()
                try:
                    if client is None:
                        client = ProxmoxClient(self.config, _stopping(stop))
                    snapshot, state = self._poll(client, state)
                except ApiCallFailed as exc:
                    if stop.is_set():
                        return
                    if exc.permission_denied or (exc.unauthenticated and rejected):
                        raise self._unreadable(exc) from exc
                    if exc.unauthenticated:  # a ticket expired, a token renewed: log in again once
                        rejected = True
                        if client is not None:
                            client.close()
                            client = None
                    if failing_since is None:
                        failing_since = began
                        log.warning("source %r: a poll failed, trying again in %gs: %s", self.source_name,
                                    interval, exc.message)  # fmt: skip
                    elif began - failing_since >= give_up:
                        raise SourceError(
                            self.source_name, exc.resource, f"{exc.message} (every poll failed for {give_up:g}s)"
                        ) from exc
                else:
                    failing_since, rejected = None, False
                    if snapshot is not None:
                        yield snapshot
                _sleep_until(stop, began + interval)
        finally:
            if client is not None:
                client.close()

    def _poll(self, client: ProxmoxClient, state: _WatchState | None) -> tuple[Snapshot | None, _WatchState]:
        if state is None:
            status, resources = self._read_cluster(client)
            snapshot, tasks = self._full_snapshot(client, status, resources)
            if tasks is not None:
                attribute_full(snapshot, TaskIndex(recent(tasks, time.time() - self._task_window())))
            return snapshot, _WatchState.after(snapshot, status, resources, tasks)
        resources = client.get_list("cluster resources", "cluster/resources")
        tasks = self._tasks(client, say=state.tasks_readable)
        state.tasks_readable = tasks is not None
        return self._delta(client, state, resources, tasks), state

    def _delta(
        self, client: ProxmoxClient, state: _WatchState, resources: list[dict[str, Any]], tasks: list[Task] | None
    ) -> Snapshot | None:
        """What changed since the last poll, as a delta; None when nothing did."""
        now, clock, tick = utcnow(), time.time(), time.monotonic()
        cluster = state.cluster
        node_rows = {str(r["node"]): r for r in resources if r.get("type") == "node" and r.get("node")}
        guest_rows: dict[int, Mapping[str, Any]] = {
            int(r["vmid"]): r for r in resources if r.get("type") in GUEST_TYPES and r.get("vmid") is not None
        }
        pool_ids = [str(r["pool"]) for r in resources if r.get("type") == "pool" and r.get("pool")]
        if not node_rows:  # no Proxmox VE cluster answers so: a proxy's page, a node mid-restart
            raise ApiCallFailed("cluster resources", "the answer lists no nodes")
        if state.guest_rows and not guest_rows:
            check = Snapshot()
            if not self._check_guest_visibility(client, check):
                raise SourceError(self.source_name, "guests", check.errors[0].removeprefix("guests: "))
        snapshot = Snapshot.changes(identity=cluster)
        facts: list[Task] = []
        late: list[Task] = []
        news: list[Task] = []
        if tasks is not None:
            state.polls += 1
            finished = {
                task.upid: state.finished.get(task.upid, (state.polls, tick)) for task in tasks if not task.running
            }
            for task in tasks:
                first_poll, first_seen = finished.get(task.upid, (state.polls, tick))
                # The two reads of a poll are not one moment: a change may show one poll after its task ended.
                if task.running or first_poll >= state.polls - 1:
                    facts.append(task)
                elif tick - first_seen <= _LATE_ROW_SECONDS:
                    late.append(task)
                # Started or ended since the last poll: a task running for an hour (a backup) hints once.
                if task.upid not in state.seen or (not task.running and task.upid not in state.finished):
                    news.append(task)
            state.finished, state.seen = finished, {task.upid for task in tasks}
            state.used = {vmid: used & state.seen for vmid, used in state.used.items() if used & state.seen}
        index = TaskIndex(facts, late)

        online = {name for name, row in node_rows.items() if row.get("status") == "online"}
        changed_nodes = []
        for name, row in node_rows.items():
            uptime = _number(row.get("uptime"))
            booted = clock - uptime if uptime else None
            rebooted = booted is not None and abs(booted - state.booted.get(name, booted)) > _REBOOT_TOLERANCE
            if booted is not None:
                state.booted[name] = booted
            if _signature(row, NODE_ROW_FIELDS) != state.node_rows.get(name) or rebooted:
                changed_nodes.append(name)
        gone_nodes = sorted(set(state.node_rows) - set(node_rows))
        if changed_nodes or gone_nodes:
            try:  # a node's address and id; when this fails, the last answer's
                state.status = client.get_list("cluster status", "cluster/status")
            except ApiCallFailed as exc:
                log.debug("source %r: %s", self.source_name, exc.message)
        status_by_node = {str(e.get("name")): e for e in state.status if e.get("type") == "node"}

        changed = {
            vmid
            for vmid, row in guest_rows.items()
            if vmid not in state.guest_rows
            or _signature(row, GUEST_ROW_FIELDS) != _signature(state.guest_rows[vmid], GUEST_ROW_FIELDS)
        }
        # A task naming the guest (a config edit, a disk moved) may have changed what only its details say.
        hints = TaskIndex(news)
        hinted = {vmid for vmid in guest_rows if hints.names(vmid)} - changed
        due = {vmid for vmid, (at, _) in state.retry.items() if at <= tick and vmid in guest_rows} - changed - hinted
        reads = sorted(changed | hinted | due)
        results: dict[int, GuestResult] = {}
        node_details: dict[str, tuple[dict[str, Any] | None, str | None]] = {}
        readable = [vmid for vmid in reads if str(guest_rows[vmid].get("node")) in online]
        asked_nodes = [name for name in changed_nodes if name in online]
        if readable or asked_nodes:
            with ThreadPoolExecutor(
                max_workers=min(self.config.concurrency, len(readable) + len(asked_nodes)),
                thread_name_prefix=f"pve-{self.source_name}",
            ) as pool:
                node_futures = {name: pool.submit(self._node_status, client, name) for name in asked_nodes}
                guest_futures = {vmid: pool.submit(self._guest, client, cluster, guest_rows[vmid]) for vmid in readable}
                node_details = {name: future.result() for name, future in node_futures.items()}
                results = {vmid: future.result() for vmid, future in guest_futures.items()}
        for name in changed_nodes:
            details, error = node_details.get(name, (None, None))
            if error:
                snapshot.fail(f"node {name} status", error)
            host = node_host(cluster, node_rows[name], status_by_node.get(name), details, now)
            if state.changed("host", host):
                snapshot.hosts.append(host)
        for name in gone_nodes:
            state.forget(snapshot, "host", "node", node_id(cluster, name))

        for vmid in reads:
            guest, before = guest_rows[vmid], state.guest_rows.get(vmid)
            result = results.get(vmid)
            if result is None:  # its node is off: what the cluster list says, the rest as last read (as collect())
                result = GuestResult(*guest_records(cluster, guest, None, None, addresses_read=False))
            for resource_name, reason in result.errors:
                snapshot.fail(resource_name, reason)
            if before is not None and before.get("type") != guest.get("type"):  # the vmid now holds another kind
                self._forget_guest(snapshot, state, vmid, before, None)
            nodes = {str(guest.get("node"))} | ({str(before.get("node"))} if before is not None else set())
            cause = None
            if vmid not in due:
                cause = index.cause_for(vmid, nodes, new=before is None, used=state.used.get(vmid, set()))
            said = False
            if result.workload is not None and state.changed("workload", result.workload):
                snapshot.workloads.append(result.workload)
                said = True
                if cause is not None:
                    snapshot.attribute("workload", result.workload, cause)
            if result.host is not None and state.changed("host", result.host):
                snapshot.hosts.append(result.host)
                said = True
                if cause is not None:
                    snapshot.attribute("host", result.host, cause)
            # A task explains one change of a guest's row, not the next one (a read on a task's hint alone, maybe
            # before the row shows the change, leaves it for that change).
            if said and cause is not None and cause.ref and vmid in changed:
                state.used.setdefault(vmid, set()).add(cause.ref)
            incomplete = bool(result.errors) or any(r is not None and r.unread for r in (result.workload, result.host))
            state.schedule(vmid, incomplete and vmid in readable, tick, float(self.config.poll_interval))
        for vmid in sorted(set(state.guest_rows) - set(guest_rows)):
            before = state.guest_rows[vmid]
            self._forget_guest(snapshot, state, vmid, before, index.cause_for(vmid, {str(before.get("node"))}))

        services = pool_services(cluster, pool_ids, guest_rows.values())
        for service in services:
            if state.changed("service", service):
                snapshot.services.append(service)
        for external_id in sorted(state.pools - {s.external_id for s in services}):
            state.forget(snapshot, "service", "pool", external_id)
        state.pools = {s.external_id for s in services}
        state.guest_rows = guest_rows
        state.node_rows = {name: _signature(row, NODE_ROW_FIELDS) for name, row in node_rows.items()}
        return snapshot if snapshot.object_count or snapshot.deleted else None

    @staticmethod
    def _forget_guest(
        snapshot: Snapshot, state: _WatchState, vmid: int, row: Mapping[str, Any], cause: Cause | None
    ) -> None:
        kind, external_id = str(row.get("type")), guest_id(state.cluster, vmid)
        state.forget(snapshot, "workload", kind, external_id, cause)
        state.forget(snapshot, "host", host_kind(kind), external_id, cause)
        state.retry.pop(vmid, None)

    @staticmethod
    def _add_guest(snapshot: Snapshot, result: GuestResult) -> None:
        add_guest(snapshot, result)

    def _guest(self, client: ProxmoxClient, cluster: str, resource: Mapping[str, Any]) -> GuestResult:
        return read_guest_details(client, self.config, cluster, resource)

    def _check_guest_visibility(self, client: ProxmoxClient, snapshot: Snapshot) -> bool:
        """Zero guests: an empty cluster (True), or a token that may not see any? Ask for its privileges."""
        try:
            permissions = client.get_dict("access permissions", "access/permissions")
        except ApiCallFailed as exc:
            snapshot.fail(
                "guests", f"the cluster lists no guests and the token's privileges could not be checked ({exc.message})"
            )
            return False
        # The answer maps each ACL path to {privilege: propagate flag}: holding the privilege is
        # the key being there (its value 0 only means it does not propagate down the tree).
        if not any(isinstance(privs, Mapping) and "VM.Audit" in privs for privs in permissions.values()):
            snapshot.fail(
                "guests",
                "the cluster lists no guests, but the token lacks VM.Audit on every path, so Proxmox VE hides all "
                f"guests from it: this is a permission problem, not an empty cluster; {_PRIVILEGE_HINT}",
            )
            return False
        return True

    def _node_status(self, client: ProxmoxClient, node: str) -> tuple[dict[str, Any] | None, str | None]:
        try:
            return client.get_dict(f"node {node} status", f"nodes/{node}/status"), None
        except ApiCallFailed as exc:
            return None, exc.message


# The fields of a /cluster/resources row that collect() stores or decides by (guest_records, pool_services,
# node_host, whether to ask for addresses): a row that differs in one of them changed. cpu, mem, disk,
# uptime, netin, diskread... move at every poll and are never stored.
GUEST_ROW_FIELDS = ("type", "node", "name", "status", "template", "tags", "maxcpu", "maxmem", "maxdisk", "pool",
                    "hastate", "lock")  # fmt: skip
NODE_ROW_FIELDS = ("status", "maxcpu", "maxmem", "level")
# A node whose boot time (now - uptime) moved by more than this rebooted between two polls.
_REBOOT_TOLERANCE = 120.0
# A guest whose details came back incomplete after a change is read again after one poll, then two,
# four... while the gap stays under this; then the next full sync reads it.
_RETRY_CAP_SECONDS = 300.0
# Proxmox VE publishes a guest's status every 10 s (pvestatd): a row may change a poll or two after the task
# that changed it ended. A task naming the guest that ended this long before its change is its cause, inferred.
_LATE_ROW_SECONDS = 30.0
# Polls failing in a row for this long (or five intervals, if longer) end the watch.
_GIVE_UP_SECONDS = 60.0


def _signature(row: Mapping[str, Any], fields: Sequence[str]) -> tuple[Any, ...]:
    return tuple(row.get(name) for name in fields)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _stopping(stop: threading.Event) -> Cutoff:
    """A cutoff that ``stop`` abandons: once set, no call is sent and no back-off sleeps on."""
    cutoff = Cutoff()
    cutoff.abandoned = stop
    return cutoff


def _sleep_until(stop: threading.Event, deadline: float) -> None:
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        stop.wait(min(left, 1.0))


@dataclass
class _WatchState:
    """What the last poll saw: each row, the digest of each record last yielded, the tasks seen finished."""

    cluster: str
    status: list[dict[str, Any]]
    node_rows: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    booted: dict[str, float] = field(default_factory=dict)  # node -> when it booted (now - uptime), our clock
    guest_rows: dict[int, Mapping[str, Any]] = field(default_factory=dict)
    hashes: dict[ObjectKey, str] = field(default_factory=dict)
    pools: set[str] = field(default_factory=set)  # the external ids of the pool services
    # UPIDs seen finished -> (the poll, the monotonic time) they were first seen finished at.
    finished: dict[str, tuple[int, float]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # UPIDs of the last answer, running or not
    polls: int = 0
    used: dict[int, set[str]] = field(default_factory=dict)  # vmid -> UPIDs already given as a change's cause
    retry: dict[int, tuple[float, float]] = field(default_factory=dict)  # vmid -> (when, gap), monotonic
    tasks_readable: bool = True

    @classmethod
    def after(
        cls,
        snapshot: Snapshot,
        status: list[dict[str, Any]],
        resources: list[dict[str, Any]],
        tasks: list[Task] | None,
    ) -> _WatchState:
        """The state a full snapshot leaves."""
        state = cls(cluster=str(snapshot.identity), status=status)
        clock = time.time()
        for row in resources:
            if row.get("type") == "node" and row.get("node"):
                state.node_rows[str(row["node"])] = _signature(row, NODE_ROW_FIELDS)
                uptime = _number(row.get("uptime"))
                if uptime:
                    state.booted[str(row["node"])] = clock - uptime
            elif row.get("type") in GUEST_TYPES and row.get("vmid") is not None:
                state.guest_rows[int(row["vmid"])] = row
        for object_type, records in (("host", snapshot.hosts), ("workload", snapshot.workloads),
                                     ("service", snapshot.services)):  # fmt: skip
            for record in records:
                state.hashes[(object_type, record.kind, record.external_id)] = record_hash(record)
        state.pools = {s.external_id for s in snapshot.services}
        # Ended before the watch began: never a fact for the changes the first delta finds.
        state.finished = {task.upid: (-1, time.monotonic()) for task in tasks or () if not task.running}
        state.seen = {task.upid for task in tasks or ()}
        state.tasks_readable = tasks is not None
        return state

    def changed(self, object_type: str, record: Host | Workload | Service) -> bool:
        """Whether this record differs from the one last yielded (and remember it)."""
        key, digest = (object_type, record.kind, record.external_id), record_hash(record)
        if self.hashes.get(key) == digest:
            return False
        self.hashes[key] = digest
        return True

    def forget(
        self, snapshot: Snapshot, object_type: str, kind: str, external_id: str, cause: Cause | None = None
    ) -> None:
        """The object is gone: say so in the delta."""
        self.hashes.pop((object_type, kind, external_id), None)
        snapshot.delete(object_type, kind, external_id, cause)

    def schedule(self, vmid: int, again: bool, now: float, interval: float) -> None:
        """Read an incomplete guest again later, each gap twice the last, while under the cap."""
        if not again:
            self.retry.pop(vmid, None)
            return
        gap = self.retry[vmid][1] * 2 if vmid in self.retry else interval
        if gap > _RETRY_CAP_SECONDS:
            self.retry.pop(vmid, None)
        else:
            self.retry[vmid] = (now + gap, gap)


def attribute_full(snapshot: Snapshot, index: TaskIndex) -> None:
    """Attach to a full snapshot's guests the task that tells their change, and to a guest gone its destroy task."""
    causes: dict[str, Cause] = {}
    for workload in snapshot.workloads:
        node = workload.attributes.get("node")
        cause = index.cause_for(workload.attributes.get("vmid", ""), {str(node)} if node else set())
        if cause is not None:
            causes[workload.external_id] = cause
            snapshot.attribute("workload", workload, cause)
    for host in snapshot.hosts:
        if host.kind != "node" and host.external_id in causes:
            snapshot.attribute("host", host, causes[host.external_id])
    cluster = snapshot.identity
    for vmid, tasks in index.by_vmid.items():
        external_id = guest_id(str(cluster), vmid)
        if external_id in causes:
            continue
        for task in tasks:
            if task.type in ("qmdestroy", "vzdestroy"):
                kind = "qemu" if task.type == "qmdestroy" else "lxc"
                snapshot.causes[("workload", kind, external_id)] = task_cause(task)
                snapshot.causes[("host", host_kind(kind), external_id)] = task_cause(task)


def cluster_identity(status: Any) -> str | None:
    """The cluster's name from /cluster/status, or the node's name for a standalone node."""
    entries = [e for e in status or [] if isinstance(e, Mapping)]
    for entry in entries:
        if entry.get("type") == "cluster" and entry.get("name"):
            return str(entry["name"])
    nodes = [e for e in entries if e.get("type") == "node" and e.get("name")]
    local = [e for e in nodes if e.get("local")]
    chosen = local or nodes
    return str(chosen[0]["name"]) if chosen else None


def _interleave_by_node(guests: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Round-robin over nodes, so that one slow node cannot hold every worker at once."""
    by_node: dict[str, list[Mapping[str, Any]]] = {}
    for guest in sorted(guests, key=lambda g: int(g["vmid"])):
        by_node.setdefault(str(guest.get("node")), []).append(guest)
    return [g for group in zip_longest(*by_node.values()) for g in group if g is not None]
