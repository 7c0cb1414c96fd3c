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
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import TYPE_CHECKING, Any, ClassVar

from connectors.proxmox.api import ApiCallFailed, ProxmoxClient, open_client
from connectors.proxmox.config import TYPE_NAME, ProxmoxConfig
from connectors.proxmox.records import (
    agent_addresses,
    agent_enabled,
    guest_records,
    lxc_addresses,
    node_host,
    pool_services,
)
from inventory.connector import Connector, KindVocabulary, SourceConfig, StatusVocabulary
from inventory.errors import SourceError
from inventory.records import Host, Scope, Snapshot, Workload
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
# pveproxy answers 500 with the agent's trouble in the reason phrase ("QEMU guest agent is
# not running", "No QEMU guest agent configured", "... qmp command ... got timeout"): the
# guest is fine, it just cannot tell us its addresses.
_AGENT_TROUBLE = ("agent", "qmp", "not running", "timeout")
_PRIVILEGE_HINT = "grant the PVEAuditor role on / to the token (a privilege-separated token needs its own ACL entry)"


@dataclass
class _GuestResult:
    workload: Workload | None = None
    host: Host | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    # What is a fact, not a failure (no address because the guest agent is not answering).
    warnings: list[tuple[str, str]] = field(default_factory=list)


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
        now = utcnow()
        try:
            status = client.get_list("cluster status", "cluster/status")
            resources = client.get_list("cluster resources", "cluster/resources")
        except ApiCallFailed as exc:
            if exc.permission_denied and exc.resource == "cluster status":
                return self._forbidden(exc)
            raise self._unreadable(exc) from exc
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
                self._add_guest(
                    snapshot, _GuestResult(*guest_records(cluster, guest, None, None, addresses_read=False))
                )
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
        snapshot.services.extend(pool_services(cluster, pool_ids, guests))
        return snapshot

    @staticmethod
    def _add_guest(snapshot: Snapshot, result: _GuestResult) -> None:
        for resource_name, reason in result.errors:
            snapshot.fail(resource_name, reason)
        for resource_name, reason in result.warnings:
            snapshot.warn(resource_name, reason)
        if result.workload is not None:
            snapshot.workloads.append(result.workload)
        if result.host is not None:
            snapshot.hosts.append(result.host)

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

    def _guest(self, client: ProxmoxClient, cluster: str, resource: Mapping[str, Any]) -> _GuestResult:
        kind, vmid, node = str(resource["type"]), int(resource["vmid"]), str(resource["node"])
        label = f"{kind} {vmid} on {node}"
        result = _GuestResult()
        config: dict[str, Any] | None
        try:
            config = client.get_dict(f"{label} config", f"nodes/{node}/{kind}/{vmid}/config")
        except ApiCallFailed as exc:
            # The guest is what the cluster list says; what only its config tells keeps its last
            # known value. This includes "does not exist": a guest deleted or migrated since
            # /cluster/resources answered is seen right by the next poll.
            result.errors.append((exc.resource, exc.message))
            config = None
        addresses: list[str] | None = None
        addresses_read = True
        if config is None:
            addresses_read = False
        elif self.config.addresses and resource.get("status") == "running" and not resource.get("template"):
            addresses, addresses_read, trouble = self._addresses(client, kind, node, vmid, config, label)
            if trouble is not None:
                result.errors.append(trouble)
        try:
            result.workload, result.host = guest_records(
                cluster, resource, config, addresses, addresses_read=addresses_read
            )
        except (KeyError, TypeError, ValueError) as exc:
            # An answer of a shape we do not know costs this guest, not the whole cluster.
            log.debug("source %r: cannot map %s", self.source_name, label, exc_info=True)
            result.errors.append((label, f"unexpected answer: {type(exc).__name__}: {exc}"))
        return result

    def _addresses(
        self, client: ProxmoxClient, kind: str, node: str, vmid: int, config: Mapping[str, Any], label: str
    ) -> tuple[list[str] | None, bool, tuple[str, str] | None]:
        """(addresses or None when the guest cannot tell, whether they were read, an error to report).

        An agent that does not answer is a hiccup, not a fact: the addresses are unread and keep
        their last known values (never erased), with no error.
        """
        if kind == "qemu" and not agent_enabled(config):
            return None, True, None  # no agent configured: do not even ask; it has no addresses to tell
        path: str
        parse: Callable[[Any], list[str] | None]
        if kind == "qemu":
            path, parse = f"nodes/{node}/qemu/{vmid}/agent/network-get-interfaces", agent_addresses
        else:
            path, parse = f"nodes/{node}/lxc/{vmid}/interfaces", lxc_addresses
        try:
            # No retry: an agent that is down answers the same way a second later.
            found = parse(client.get(f"{label} addresses", path, retry=False))
            return found, found is not None, None
        except ApiCallFailed as exc:
            if exc.status == 501 or (exc.status == 500 and any(word in exc.reason.lower() for word in _AGENT_TROUBLE)):
                return None, False, None  # agent off, not installed or unsupported: addresses as last read
            return None, False, (exc.resource, exc.message)


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
