"""A loopback Proxmox VE API server that speaks the real protocol, for tests, benchmarks and the demo.

HTTPS on 127.0.0.1 with a certificate issued at start-up by a throw-away CA
(``trustme``), serving ``/api2/json/...`` with the ``{"data": ...}`` envelope and
the field names of the Proxmox VE API viewer. Token auth
(``Authorization: PVEAPIToken=user@realm!name=secret``) and ticket auth (``POST
/access/ticket``, then the ``PVEAuthCookie`` cookie) are both checked. Errors
look like pveproxy's: the HTTP reason phrase carries the message (``500 QEMU
guest agent is not running``), the body is ``{"data": null}``.

    with FakeProxmox(build_cluster(nodes=3, guests=30)) as pve:
        ProxmoxAPI("127.0.0.1", port=pve.port, user="inventory@pve", token_name="ro",
                   token_value=pve.token_secret, verify_ssl=pve.ca_file)

The real ``proxmoxer`` (and Ansible's Proxmox inventory plugin) talk to it
unchanged. Faults are injected through ``pve.faults``; the cluster is mutated
through ``pve.cluster`` between polls.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import secrets
import socket
import ssl
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from connectors.proxmox.fake.model import (
    GIB,
    KERNEL,
    MIB,
    PVE_MANAGER,
    PVE_VERSION,
    FakeCluster,
    FakeFaults,
    FakeGuest,
    FakeNode,
    FakeTask,
    build_cluster,
)
from inventory.errors import HarnessError
from inventory.testing.serving import serve_in_background, shut_down

__all__ = ["FakeProxmox", "build_cluster"]

API_PREFIX = "/api2/json"


class ApiError(HarnessError):
    """An answer other than 200: pveproxy puts the message in the reason phrase."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _node_resource(node: FakeNode, audit: bool = True) -> dict[str, Any]:
    # pve-manager's extract_node_stats: level, maxcpu and maxmem come from the node's performance data,
    # which the cluster drops a few minutes after the node goes off (a homelab node off for the night).
    # Every token sees every node; without Sys.Audit on it, only its id, name, status and level.
    entry: dict[str, Any] = {
        "id": f"node/{node.name}",
        "type": "node",
        "node": node.name,
        "status": "online" if node.online else "offline",
    }
    if node.online:
        entry["level"] = ""
    if node.online and audit:
        entry.update(
            cpu=0.031,
            maxcpu=node.cpus,
            mem=node.memory_bytes // 4,
            maxmem=node.memory_bytes,
            disk=20 * GIB,
            maxdisk=100 * GIB,
            uptime=node.uptime,
            **{"cgroup-mode": 2},
        )
    return entry


def _guest_resource(guest: FakeGuest, node_online: bool) -> dict[str, Any]:
    running = guest.status == "running"
    # pve-manager's extract_vm_stats: name, status, template and the sizes come from the guest's
    # performance data; a guest of a node that has been off for minutes has none, and status "unknown".
    entry: dict[str, Any] = {
        "id": f"{guest.kind}/{guest.vmid}",
        "type": guest.kind,
        "vmid": guest.vmid,
        "node": guest.node,
        "status": "unknown",
    }
    if node_online:
        entry.update(
            name=guest.name,
            status=guest.status,
            template=int(guest.template),
            maxcpu=guest.cores,
            maxmem=guest.memory_mib * MIB,
            maxdisk=guest.disk_gib * GIB,
            cpu=0.02 if running else 0,
            mem=guest.memory_mib * MIB // 3 if running else 0,
            disk=0,
            uptime=guest.uptime if running else 0,
            netin=123456 if running else 0,
            netout=65432 if running else 0,
            diskread=0,
            diskwrite=0,
        )
    if guest.tags:
        entry["tags"] = ";".join(guest.tags)
    if guest.pool:
        entry["pool"] = guest.pool
    if guest.hastate:
        entry["hastate"] = guest.hastate
    if guest.lock:
        entry["lock"] = guest.lock
    return entry


def _guest_config(guest: FakeGuest) -> dict[str, Any]:
    config: dict[str, Any] = {"cores": guest.cores, "digest": hashlib.sha1(f"{guest}".encode()).hexdigest()}
    if guest.kind == "qemu":
        config.update(
            name=guest.name,
            sockets=1,
            memory=str(guest.memory_mib),
            ostype="l26",
            boot="order=scsi0;ide2;net0",
            scsihw="virtio-scsi-single",
            scsi0=f"local-lvm:vm-{guest.vmid}-disk-0,iothread=1,size={guest.disk_gib}G",
            ide2="none,media=cdrom",
            smbios1=f"uuid={guest.smbios_uuid}",
            vmgenid=str(uuid.UUID(int=guest.vmid)),
            agent="0" if guest.agent == "disabled" else "enabled=1,fstrim_cloned_disks=1",
        )
        for index, mac in enumerate(guest.macs):
            config[f"net{index}"] = f"virtio={mac},bridge=vmbr0,firewall=1"
    else:
        config.update(
            hostname=guest.name,
            memory=guest.memory_mib,
            swap=512,
            ostype="debian",
            arch="amd64",
            unprivileged=1,
            rootfs=f"local-lvm:vm-{guest.vmid}-disk-0,size={guest.disk_gib}G",
        )
        for index, mac in enumerate(guest.macs):
            config[f"net{index}"] = f"name=eth{index},bridge=vmbr0,hwaddr={mac},ip=dhcp,type=veth"
    if guest.template:
        config["template"] = 1
    if guest.tags:
        config["tags"] = ";".join(guest.tags)
    if guest.description:
        config["description"] = guest.description
    if guest.lock:
        config["lock"] = guest.lock
    config["onboot"] = 1
    return config


def _agent_interfaces(guest: FakeGuest) -> dict[str, Any]:
    interfaces = [
        {
            "name": "lo",
            "hardware-address": "00:00:00:00:00:00",
            "ip-addresses": [
                {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
                {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128},
            ],
            "statistics": {
                "rx-bytes": 100,
                "tx-bytes": 100,
                "rx-packets": 1,
                "tx-packets": 1,
                "rx-errs": 0,
                "tx-errs": 0,
                "rx-dropped": 0,
                "tx-dropped": 0,
            },
        }
    ]
    for index, mac in enumerate(guest.macs):
        addresses = []
        if index == 0:
            for address in guest.addresses:
                ip, prefix = address.split("/")
                addresses.append(
                    {"ip-address": ip, "ip-address-type": "ipv6" if ":" in ip else "ipv4", "prefix": int(prefix)}
                )
        interfaces.append({"name": f"eth{index}", "hardware-address": mac.lower(), "ip-addresses": addresses})
    return {"result": interfaces}


def _lxc_interfaces(guest: FakeGuest) -> list[dict[str, Any]]:
    """As pve-container answers: every address in ``ip-addresses``; ``inet`` / ``inet6`` keep the
    last address of each family only (the legacy keys)."""
    interfaces = [_lxc_interface("lo", "00:00:00:00:00:00", ["127.0.0.1/8", "::1/128"])]
    for index, mac in enumerate(guest.macs):
        interfaces.append(_lxc_interface(f"eth{index}", mac.lower(), guest.addresses if index == 0 else []))
    return interfaces


def _lxc_interface(name: str, hwaddr: str, addresses: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "hwaddr": hwaddr, "ip-addresses": []}
    for address in addresses:
        ip, prefix = address.split("/")
        family = "inet6" if ":" in ip else "inet"
        entry[family] = address
        entry["ip-addresses"].append({"ip-address": ip, "ip-address-type": family, "prefix": prefix})
    return entry


def _task_entry(task: FakeTask) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "upid": task.upid,
        "node": task.node,
        "starttime": task.starttime,
        "type": task.type,
        "id": task.id,
        "user": task.user,
    }
    if "!" in task.user:  # an API token's task: PVE::AccessControl::split_tokenid
        entry["user"], _, entry["tokenid"] = task.user.partition("!")
    if task.running:
        entry["pid"] = task.pid
    else:
        entry.update(endtime=task.endtime, status=task.status, saved="1")
    return entry


class _Api:
    """Routes a GET to the cluster model, enforcing the token's privileges like pveproxy does."""

    def __init__(self, cluster: FakeCluster, faults: FakeFaults) -> None:
        self.cluster = cluster
        self.faults = faults
        self._index: dict[str, FakeGuest] = {}
        self._index_source: tuple[Any, ...] | None = None

    # -- privileges ---------------------------------------------------------------------------
    def can_see_nodes(self) -> bool:
        return self.faults.permissions in ("full", "nodes-only")

    def can_see_guests(self) -> bool:
        return self.faults.permissions == "full"

    def require(self, allowed: bool, path: str, privilege: str) -> None:
        if not allowed:
            raise ApiError(403, f"Permission check failed ({path}, {privilege})")

    def permissions(self) -> dict[str, dict[str, int]]:
        """GET /access/permissions: ACL path -> {privilege: propagate flag}, as a PVEAuditor role gives."""
        if self.faults.permissions == "none":
            return {}
        privileges = {"Sys.Audit": 1, "Datastore.Audit": 1}
        paths = ["/", "/nodes"]
        if self.faults.permissions == "full":
            privileges |= {"VM.Audit": 1, "Pool.Audit": 1, "SDN.Audit": 1}
            paths += ["/storage", "/vms", "/pool", "/access"]
        return {path: dict(privileges) for path in paths}

    # -- routing ------------------------------------------------------------------------------
    def get(self, path: str, query: dict[str, str]) -> Any:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if parts == ["version"]:
            return {"version": PVE_VERSION, "release": PVE_VERSION.rsplit(".", 1)[0], "repoid": "faa83925c9641325"}
        if parts == ["access", "permissions"]:
            return self.permissions()
        if parts == ["cluster", "status"]:
            self.require(self.can_see_nodes(), "/", "Sys.Audit")
            return self.cluster_status()
        if parts == ["cluster", "resources"]:
            return self.resources(query.get("type"))
        if parts == ["cluster", "tasks"]:
            return self.tasks()
        if parts == ["nodes"]:  # every node, to any token (pve-manager's node index filters figures, not nodes)
            return [{**_node_resource(n, self.can_see_nodes()), "ssl_fingerprint": "00"} for n in self.cluster.nodes]
        if parts == ["pools"]:
            return [
                {"poolid": pool, "comment": comment}
                for pool, comment in sorted(self.cluster.pools.items())
                if self.can_see_guests()
            ]
        if len(parts) == 2 and parts[0] == "pools":
            return self.pool(parts[1])
        if len(parts) >= 2 and parts[0] == "nodes":
            return self.node_call(parts[1], parts[2:])
        raise ApiError(501, f"Method 'GET /{'/'.join(parts)}' not implemented")

    def cluster_status(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        if self.cluster.name is not None:
            entries.append(
                {
                    "type": "cluster",
                    "id": "cluster",
                    "name": self.cluster.name,
                    "nodes": len(self.cluster.nodes),
                    "quorate": 1,
                    "version": 8,
                }
            )
        for index, node in enumerate(self.cluster.nodes):
            entries.append(
                {
                    "type": "node",
                    "id": f"node/{node.name}",
                    "name": node.name,
                    "ip": node.ip,
                    "local": int(index == 0),
                    "nodeid": index + 1,
                    "online": int(node.online),
                    "level": "",
                }
            )
        return entries

    def resources(self, kind: str | None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = []
        if kind in (None, "node"):  # every node, to any token; guests and pools filtered by privilege
            result.extend(_node_resource(n, self.can_see_nodes()) for n in self.cluster.nodes)
        if kind in (None, "storage") and self.can_see_nodes():
            for node in self.cluster.nodes:
                result.append(
                    {
                        "id": f"storage/{node.name}/local-lvm",
                        "type": "storage",
                        "storage": "local-lvm",
                        "node": node.name,
                        "status": "available" if node.online else "unknown",
                        "plugintype": "lvmthin",
                        "content": "rootdir,images",
                        "shared": 0,
                    }
                )
        if kind in (None, "vm") and self.can_see_guests():
            online = {n.name for n in self.cluster.nodes if n.online}
            result.extend(_guest_resource(g, g.node in online) for g in self.cluster.guests)
        if kind in (None, "pool") and self.can_see_guests():
            result.extend({"id": f"/pool/{pool}", "type": "pool", "pool": pool} for pool in sorted(self.cluster.pools))
        return result

    def tasks(self) -> list[dict[str, Any]]:
        """GET /cluster/tasks: what every node broadcast of its tasks (running ones, then the recent finished).

        pve-manager lists everyone's tasks to a caller with Sys.Audit on /, else the caller's own; it compares
        the task's user (a token's task split into user and tokenid) with the caller, so a token without
        Sys.Audit sees none. Finished tasks lose their pid; no entry keeps pstart.
        """
        if not self.can_see_nodes():
            return []
        return [_task_entry(task) for task in self.cluster.listed_tasks()]

    def pool(self, pool_id: str) -> dict[str, Any]:
        self.require(self.can_see_guests(), f"/pool/{pool_id}", "Pool.Audit")
        if pool_id not in self.cluster.pools:
            raise ApiError(500, f"pool '{pool_id}' does not exist")
        online = {n.name for n in self.cluster.nodes if n.online}
        members = [_guest_resource(g, g.node in online) for g in self.cluster.guests if g.pool == pool_id]
        return {"comment": self.cluster.pools[pool_id], "members": members}

    def node_call(self, node_name: str, rest: list[str]) -> Any:
        node = next((n for n in self.cluster.nodes if n.name == node_name), None)
        if node is None:
            raise ApiError(
                500,
                f"hostname lookup '{node_name}' failed - failed to get address info for: {node_name}: Name or service "
                "not known",
            )
        self.require(self.can_see_nodes(), f"/nodes/{node_name}", "Sys.Audit")
        if not node.online:
            # pveproxy proxies the call to the node and cannot reach it.
            raise ApiError(595, "No route to host")
        delay = self.faults.slow_nodes.get(node_name)
        if delay:
            time.sleep(delay)
        if rest == ["status"]:
            return {
                "pveversion": PVE_MANAGER,
                "kversion": KERNEL,
                "uptime": node.uptime,
                "cpu": 0.031,
                "cpuinfo": {
                    "model": node.cpu_model,
                    "cpus": node.cpus,
                    "sockets": 1,
                    "cores": node.cpus // 2,
                    "mhz": "3000.000",
                },
                "memory": {
                    "total": node.memory_bytes,
                    "used": node.memory_bytes // 4,
                    "free": node.memory_bytes * 3 // 4,
                },
                "loadavg": ["0.12", "0.10", "0.09"],
            }
        if rest == ["version"]:
            return {"version": PVE_VERSION, "release": PVE_VERSION.rsplit(".", 1)[0], "repoid": "faa83925c9641325"}
        if rest == ["network"]:
            return [
                {
                    "iface": "vmbr0",
                    "type": "bridge",
                    "active": 1,
                    "address": node.ip,
                    "netmask": "24",
                    "gateway": "10.0.0.254",
                    "cidr": f"{node.ip}/24",
                }
            ]
        if len(rest) == 1 and rest[0] in ("qemu", "lxc"):
            guests = (
                [g for g in self.cluster.guests if g.node == node_name and g.kind == rest[0]]
                if self.can_see_guests()
                else []
            )
            return [self.guest_list_entry(g) for g in guests]
        if len(rest) >= 2 and rest[0] in ("qemu", "lxc"):
            return self.guest_call(node_name, rest[0], rest[1], rest[2:])
        raise ApiError(501, f"Method 'GET /nodes/{node_name}/{'/'.join(rest)}' not implemented")

    def find_guest(self, vmid_text: str, kind: str) -> FakeGuest | None:
        # An index instead of a scan per call: at 1,000 guests the scan was the fake's main cost.
        # Rebuilt whenever the list holds other objects than when it was built (a guest added,
        # removed, or swapped for another). The snapshot keeps the guests themselves, not their
        # ids, so a freed guest's id cannot be reused by a new one; tuple comparison is by
        # identity first, in C.
        guests = self.cluster.guests
        fingerprint = tuple(guests)
        if self._index_source != fingerprint:
            self._index = {str(g.vmid): g for g in guests}
            self._index_source = fingerprint
        guest = self._index.get(vmid_text)
        return guest if guest is not None and guest.kind == kind else None

    def guest_list_entry(self, guest: FakeGuest) -> dict[str, Any]:
        entry = _guest_resource(guest, True)
        for key in ("id", "type", "node"):
            entry.pop(key, None)
        entry["cpus"] = entry.pop("maxcpu")
        if not guest.template:
            entry.pop("template")
        return entry

    def guest_call(self, node_name: str, kind: str, vmid_text: str, rest: list[str]) -> Any:
        self.require(self.can_see_guests(), f"/vms/{vmid_text}", "VM.Audit")
        guest = self.find_guest(vmid_text, kind)
        if guest is None or guest.node != node_name:
            label = "CT" if kind == "lxc" else "VM"
            raise ApiError(
                500,
                f"Configuration file 'nodes/{node_name}/{kind}-server/{vmid_text}.conf' does not exist"
                if guest is None
                else f"{label} {vmid_text} not on node {node_name}",
            )
        if rest == ["config"]:
            return _guest_config(guest)
        if rest == ["status", "current"]:
            status = {
                "status": guest.status,
                "vmid": guest.vmid,
                "name": guest.name,
                "uptime": guest.uptime if guest.status == "running" else 0,
                "cpus": guest.cores,
                "maxmem": guest.memory_mib * MIB,
            }
            if kind == "qemu":
                status["qmpstatus"] = guest.status
                status["agent"] = int(guest.agent != "disabled")
            if guest.hastate:
                status["ha"] = {"managed": 1, "state": guest.hastate}
            return status
        if rest == ["snapshot"]:
            return [{"name": "current", "description": "You are here!", "running": int(guest.status == "running")}]
        if kind == "qemu" and rest == ["agent", "network-get-interfaces"]:
            if guest.status != "running":
                raise ApiError(500, f"VM {guest.vmid} is not running")
            if guest.agent == "disabled":
                raise ApiError(500, "No QEMU guest agent configured")
            if guest.agent == "not-running":
                raise ApiError(500, "QEMU guest agent is not running")
            if guest.agent == "hung":
                time.sleep(self.faults.hung_agent_seconds)
                raise ApiError(500, f"VM {guest.vmid} qmp command 'guest-network-get-interfaces' failed - got timeout")
            return _agent_interfaces(guest)
        if kind == "lxc" and rest == ["interfaces"]:
            if guest.status != "running":
                raise ApiError(500, f"CT {guest.vmid} not running")
            return _lxc_interfaces(guest)
        raise ApiError(501, f"Method 'GET /nodes/{node_name}/{kind}/{vmid_text}/{'/'.join(rest)}' not implemented")


class FakeProxmox:
    """The HTTPS server around ``_Api``; a context manager that starts and stops it."""

    def __init__(
        self,
        cluster: FakeCluster | None = None,
        *,
        token_id: str = "inventory@pve!ro",
        user: str = "inventory@pve",
        password: str | None = None,
        faults: FakeFaults | None = None,
    ) -> None:
        import trustme  # test-only dependency: imported when a fake is built, not when this module is

        self.cluster = cluster or build_cluster()
        self.faults = faults or FakeFaults()
        self.token_id = token_id
        self.token_secret = str(uuid.uuid4())
        self.user = user
        self.password = password or secrets.token_urlsafe(16)
        self._tickets: set[str] = set()
        self._lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()
        # Every request path in order, while ``recording`` is on (a benchmark replays them bare).
        self.recording = False
        self.requested: list[str] = []
        self._api = _Api(self.cluster, self.faults)

        # ECDSA keys: ten times quicker to make than RSA, and every test makes a fresh CA.
        self._ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
        self._server_cert = self._ca.issue_cert("127.0.0.1", "localhost")
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-pve-")
        self.ca_file = Path(self._tmp.name) / "pve-root-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))
        leaf_pem = self._server_cert.cert_chain_pems[0].bytes().decode()
        # The sha256 fingerprint of the server certificate, as `pvenode cert info` shows it.
        digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(leaf_pem)).hexdigest().upper()
        self.fingerprint = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
        self._ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_cert.configure_cert(self._ssl_context)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> FakeProxmox:
        self._httpd = _TLSServer(("127.0.0.1", 0), _make_handler(self), self._ssl_context)
        self._thread = serve_in_background(self._httpd, "fake-pve")
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            shut_down(self._httpd)
            self._httpd = None
        self._tmp.cleanup()

    def __enter__(self) -> FakeProxmox:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the fake is not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def source(self, name: str = "pve", **settings: Any) -> dict[str, Any]:
        """A config's ``sources:`` entry that reaches this fake with its token (``settings`` add or override keys)."""
        return {
            "type": "proxmox",
            "name": name,
            "url": self.url,
            "token_id": self.token_id,
            "token_secret": self.token_secret,
            "ca_file": str(self.ca_file),
            **settings,
        }

    @property
    def total_calls(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    # -- request handling (called from handler threads) ----------------------------------------
    def authenticate(self, headers: Any) -> bool:
        authorization = headers.get("Authorization", "")
        if authorization.startswith("PVEAPIToken="):
            token_id, _, secret = authorization[len("PVEAPIToken=") :].partition("=")
            return token_id == self.token_id and secrets.compare_digest(secret, self.token_secret)
        cookies = headers.get("Cookie", "")
        match = re.search(r"PVEAuthCookie=([^;]+)", cookies)
        if match:
            with self._lock:
                return unquote(match.group(1)) in self._tickets
        return False

    def issue_ticket(self, form: dict[str, str]) -> dict[str, Any]:
        username, password = form.get("username", ""), form.get("password", "")
        with self._lock:
            renewal = password in self._tickets
        if username != self.user or not (renewal or secrets.compare_digest(password, self.password)):
            raise ApiError(401, "authentication failure")
        ticket = f"PVE:{self.user}:{secrets.token_hex(8).upper()}::{secrets.token_urlsafe(32)}"
        with self._lock:
            self._tickets.add(ticket)
        return {"username": self.user, "ticket": ticket, "CSRFPreventionToken": secrets.token_hex(16), "cap": {}}

    def injected_failure(self, path: str) -> ApiError | None:
        with self._lock:
            for index, (pattern, status, reason, times) in enumerate(self.faults.failures):
                if re.search(pattern, path):
                    if times is not None:
                        if times <= 0:
                            continue
                        self.faults.failures[index] = (pattern, status, reason, times - 1)
                    return ApiError(status, reason)
        return None

    def count(self, method: str, path: str) -> None:
        # Count by route shape (ids replaced) so that a benchmark can say which calls dominate.
        shape = re.sub(r"/\d+(?=/|$)", "/{vmid}", path)
        shape = re.sub(r"^/nodes/[^/]+", "/nodes/{node}", shape)
        with self._lock:
            self.calls[f"{method} {shape}"] += 1
            if self.recording:
                self.requested.append(path)


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    # A benchmark opens many connections at once; the default backlog of 5 would refuse some.
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext
    ) -> None:
        self._context = context
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the connection's own thread, never in the accept loop,
        # so that one slow or refusing client cannot stall the others.
        try:
            tls = self._context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # e.g. a client that refused our certificate: nothing to serve
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-answer is routine here


def _make_handler(fake: FakeProxmox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as pveproxy does
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle plus delayed ACK
        # would stall every answer by tens of milliseconds.
        disable_nagle_algorithm = True
        server_version = "pve-api-daemon/3.0"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, reason: str | None, data: Any) -> None:
            self._answer_raw(status, "application/json;charset=UTF-8", json.dumps({"data": data}).encode(), reason)

        def _answer_raw(self, status: int, content_type: str, body: bytes, reason: str | None = None) -> None:
            self.send_response(status, reason)
            if status in fake.faults.retry_after:
                self.send_header("Retry-After", f"{fake.faults.retry_after[status]:g}")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            path = split.path
            if fake.faults.latency:
                time.sleep(fake.faults.latency)
            if not path.startswith(API_PREFIX + "/"):
                self._answer(404, "Not Found", None)
                return
            api_path = path[len(API_PREFIX) :]
            fake.count(method, api_path)
            length = int(self.headers.get("Content-Length") or 0)
            raw_body = self.rfile.read(length).decode() if length else ""
            try:
                failure = fake.injected_failure(api_path)
                if failure is not None and failure.status == 200:
                    self._answer_raw(200, "text/html", failure.reason.encode())  # e.g. a proxy's error page
                    return
                if failure is not None and failure.status == 0:
                    self.close_connection = True  # no answer at all: the client sees the connection drop
                    return
                if failure is not None:
                    raise failure
                if method == "POST" and api_path == "/access/ticket":
                    form = {k: v[0] for k, v in parse_qs(raw_body).items()}
                    self._answer(200, None, fake.issue_ticket(form))
                    return
                if not fake.authenticate(self.headers):
                    raise ApiError(401, "No ticket")
                if method != "GET":
                    raise ApiError(501, f"Method '{method} {api_path}' not implemented")
                query = {k: v[0] for k, v in parse_qs(split.query).items()}
                self._answer(200, None, fake._api.get(api_path, query))
            except ApiError as error:
                self._answer(error.status, error.reason, None)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


def free_port() -> int:
    """A loopback port nobody listens on (for "server down" tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    """Serve a fake cluster until interrupted, for a demo: prints a ready-to-use source entry."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m connectors.proxmox.fake.server", description=main.__doc__)
    parser.add_argument("--name", default="lab", help="cluster name (empty: a standalone node)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--guests", type=int, default=30)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    fake = FakeProxmox(build_cluster(name=args.name or None, nodes=args.nodes, guests=args.guests))
    fake.faults.latency = args.latency_ms / 1000
    with fake:
        secret_file = Path(fake.ca_file).parent / "token-secret"
        secret_file.write_text(fake.token_secret)
        entry = {
            "type": "proxmox",
            "name": args.name or "pve",
            "url": fake.url,
            "token_id": fake.token_id,
            "token_secret_file": str(secret_file),
            "ca_file": str(fake.ca_file),
        }
        print("sources:\n  - " + json.dumps(entry), flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
