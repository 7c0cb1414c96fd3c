"""Pure mapping from Proxmox VE API answers to inventory records (no I/O, no SDK).

Identity is the cluster name plus the source's own ids: a node is
``{cluster}/{node}``, a guest ``{cluster}/{vmid}`` (a vmid is unique in a
cluster; names are not, and a migrated guest keeps its vmid). Attributes keep
what is stable between polls: live counters (cpu usage, netin, uptime) are left
out or coarsened, so that an unchanged guest hashes the same every time.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from inventory.records import Host, Ref, Service, Workload

_MAC = re.compile(r"\b([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})\b")
_NET_KEY = re.compile(r"^net\d+$")
_DISK_KEY = re.compile(r"^(?:scsi|virtio|sata|ide|efidisk|tpmstate|rootfs|mp)\d*$")
_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
# Boot time is kept rather than uptime (which changes every poll), rounded so that the
# second of jitter between the node's clock and ours does not look like a change.
_BOOT_TIME_GRANULARITY = timedelta(minutes=10)


def node_id(cluster: str, node: str) -> str:
    return f"{cluster}/{node}"


def guest_id(cluster: str, vmid: int | str) -> str:
    return f"{cluster}/{vmid}"


def split_tags(value: str | None) -> list[str]:
    """Proxmox stores tags as one string; ';' is the separator it writes, ',' and spaces also occur."""
    if not value:
        return []
    return sorted({tag for tag in re.split(r"[;,\s]+", value) if tag})


def parse_property_string(value: str) -> dict[str, str]:
    """``local-lvm:vm-100-disk-0,size=8G`` -> {"volume": "local-lvm:vm-100-disk-0", "size": "8G"}."""
    result: dict[str, str] = {}
    for index, part in enumerate(str(value).split(",")):
        key, sep, item = part.partition("=")
        if sep:
            result[key.strip()] = item.strip()
        elif index == 0:
            result["volume"] = part.strip()
    return result


def size_bytes(size: str | None) -> int | None:
    if not size:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", size.strip().upper())
    if not match:
        return None
    return int(float(match.group(1)) * _UNITS.get(match.group(2), 1))


def config_macs(config: Mapping[str, Any]) -> tuple[str, ...]:
    """MAC addresses from netN entries: ``virtio=BC:24:11:..`` (QEMU) or ``hwaddr=BC:24:11:..`` (LXC)."""
    macs = []
    for key in sorted(config, key=_natural):
        if _NET_KEY.match(key):
            match = _MAC.search(str(config[key]))
            if match:
                macs.append(match.group(1).lower())
    return tuple(dict.fromkeys(macs))


def config_disks(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    disks = []
    for key in sorted(config, key=_natural):
        if not _DISK_KEY.match(key):
            continue
        props = parse_property_string(config[key])
        if props.get("media") == "cdrom":
            continue
        disks.append(
            {
                "key": key,
                "volume": props.get("volume"),
                "size": props.get("size"),
                "size_bytes": size_bytes(props.get("size")),
            }
        )
    return disks


def smbios_uuid(config: Mapping[str, Any]) -> str | None:
    value = config.get("smbios1")
    if not value:
        return None
    found = parse_property_string(value).get("uuid")
    return found.lower() if found else None


def agent_enabled(config: Mapping[str, Any]) -> bool:
    """``agent: 1`` and ``agent: enabled=1,fstrim_cloned_disks=1`` both mean on."""
    value = config.get("agent")
    if value in (None, ""):
        return False
    props = parse_property_string(str(value))
    flag = props.get("enabled", props.get("volume", "0"))
    return flag.strip().lower() in ("1", "yes", "on", "true")


def _usable_address(text: str) -> str | None:
    try:
        address = ipaddress.ip_interface(text.strip()).ip
    except ValueError:
        return None
    # Loopback and link-local addresses say nothing about which machine this is.
    if address.is_loopback or address.is_link_local or address.is_unspecified:
        return None
    return str(address)


def agent_addresses(answer: Any) -> list[str] | None:
    """Addresses from ``agent/network-get-interfaces``; None when the agent answered with an error."""
    result = answer.get("result") if isinstance(answer, Mapping) else None
    if not isinstance(result, list):
        return None  # e.g. {"result": {"error": {"class": "Unsupported"}}} from old Windows agents
    found = []
    for interface in result:
        if not isinstance(interface, Mapping):
            continue
        for entry in interface.get("ip-addresses") or []:
            address = _usable_address(str(entry.get("ip-address", "")))
            if address:
                found.append(address)
    return sorted(set(found), key=_address_order)


def lxc_addresses(answer: Any) -> list[str] | None:
    """Addresses from ``lxc/{vmid}/interfaces``.

    Each interface lists every address in ``ip-addresses`` ({"ip-address", "ip-address-type",
    "prefix"}); the older ``inet`` / ``inet6`` keys hold one address per family only (the last),
    so they are read only from a node too old to send ``ip-addresses``.
    """
    if not isinstance(answer, list):
        return None
    found = []
    for interface in answer:
        if not isinstance(interface, Mapping):
            continue
        entries = interface.get("ip-addresses")
        if isinstance(entries, list):
            texts = [str(e.get("ip-address", "")) for e in entries if isinstance(e, Mapping)]
        else:
            texts = [text for key in ("inet", "inet6") for text in str(interface.get(key) or "").split()]
        for text in texts:
            address = _usable_address(text)
            if address:
                found.append(address)
    return sorted(set(found), key=_address_order)


def _address_order(text: str) -> tuple[int, Any]:
    address = ipaddress.ip_address(text)
    return (address.version, address)


def _natural(key: str) -> tuple[str, int]:
    match = re.match(r"^(\D+)(\d*)$", key)
    if not match:
        return (key, -1)
    return (match.group(1), int(match.group(2) or -1))


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value not in (None, "", [], {})}


def boot_time(uptime: Any, now: datetime) -> str | None:
    seconds = _int(uptime)
    if not seconds:
        return None
    booted = now - timedelta(seconds=seconds)
    rounded = (
        datetime.min.replace(tzinfo=UTC)
        + round((booted - datetime.min.replace(tzinfo=UTC)) / _BOOT_TIME_GRANULARITY) * _BOOT_TIME_GRANULARITY
    )
    return rounded.isoformat()


# What only /nodes/{node}/status tells of a node, and only a guest's config of the guest: when
# that call fails (or the node is off), these keep their last known values (``unread``).
NODE_DETAILS = ("cpu_model", "cpu_sockets", "pve_version", "kernel", "booted_at")
NODE_LISTED_DETAILS = ("cpus", "memory_bytes", "subscription_level")
# What /cluster/resources says of a guest from the cluster's performance data: a guest of a node
# that has been off for a few minutes is listed with its id, node, type, pool, tags, lock and
# HA state only, and status "unknown".
GUEST_LISTED_ATTRIBUTES = ("memory_bytes", "disk_bytes", "template")
GUEST_CONFIG_ATTRIBUTES = (
    "cpus",
    "disks",
    "description",
    "ostype",
    "onboot",
    "agent",
    "lock",
    "mac_addresses",
    "machine_uuid",
)
# The LXC's hostname comes from its config too; a VM's host is named after the guest.
GUEST_HOST_CONFIG_FIELDS = ("machine_uuid", "mac_addresses", "hostname")


def _unread_attributes(keys: Iterable[str], attributes: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(f"attributes.{key}" for key in keys if key not in attributes)


def node_host(
    cluster: str,
    resource: Mapping[str, Any],
    status_entry: Mapping[str, Any] | None,
    node_status: Mapping[str, Any] | None,
    now: datetime,
) -> Host:
    """A node from its /cluster/resources entry, its /cluster/status entry and /nodes/{node}/status.

    Without its status (the node is off, or the call failed) the details only that call
    gives are unread: they keep their last known values.
    """
    name = str(resource["node"])
    details = node_status or {}
    cpuinfo = details.get("cpuinfo") or {}
    memory = details.get("memory") or {}
    pveversion = str(details.get("pveversion") or "")
    attributes = _compact(
        {
            "node": name,
            "cluster": cluster,
            "cpus": _int(resource.get("maxcpu")) or _int(cpuinfo.get("cpus")),
            "cpu_model": cpuinfo.get("model"),
            "cpu_sockets": _int(cpuinfo.get("sockets")),
            "memory_bytes": _int(resource.get("maxmem")) or _int(memory.get("total")),
            "pve_version": pveversion.split("/")[1] if pveversion.count("/") >= 1 else pveversion or None,
            "kernel": details.get("kversion"),
            "subscription_level": resource.get("level"),
            "booted_at": boot_time(details.get("uptime") or resource.get("uptime"), now),
            "nodeid": _int((status_entry or {}).get("nodeid")),
        }
    )
    ip = (status_entry or {}).get("ip")
    return Host(
        kind="node",
        external_id=node_id(cluster, name),
        name=name,
        status=str(resource.get("status") or "unknown"),
        hostname=name,
        addresses=(str(ip),) if ip else (),
        attributes=attributes,
        # Without its status, what the cluster list no longer says of an offline node (its sizes and
        # subscription come from data the cluster drops minutes after the node goes) is unread too.
        unread=_unread_attributes(NODE_DETAILS + NODE_LISTED_DETAILS, attributes)
        if node_status is None
        else frozenset(),
    )


def guest_records(
    cluster: str,
    resource: Mapping[str, Any],
    config: Mapping[str, Any] | None,
    addresses: Iterable[str] | None,
    *,
    addresses_read: bool = True,
) -> tuple[Workload, Host]:
    """A guest as a workload (what runs) and as a host (the machine it is; a template's status says "template").

    ``config`` None: the guest's config could not be read (its node is off, the call failed);
    the guest is what the cluster list says, and what only its config tells is unread.
    ``addresses_read`` False: its addresses could not be read (agent hiccup) and are unread.
    """
    config_read = config is not None
    config = config or {}
    kind = str(resource["type"])  # "qemu" | "lxc"
    vmid = int(resource["vmid"])
    external_id = guest_id(cluster, vmid)
    # Neither the cluster list (its node long off) nor the config says the name: the vmid stands in
    # for a new guest, a known one keeps its name.
    name_known = bool(resource.get("name") or config.get("name") or config.get("hostname"))
    name = str(resource.get("name") or config.get("name") or config.get("hostname") or vmid)
    template = bool(_int(resource.get("template")) or _int(config.get("template")))
    # A template never runs: "template" (inert), not the "stopped" the cluster list says of it.
    status = TEMPLATE_STATUS if template else str(resource.get("status") or "unknown")
    tags = split_tags(resource.get("tags") or config.get("tags"))
    cores = _int(config.get("cores"))
    sockets = _int(config.get("sockets")) or 1
    cpus = (
        _int(config.get("vcpus"))
        or (cores * sockets if cores and kind == "qemu" else cores)
        or _int(resource.get("maxcpu"))
    )
    workload = Workload(
        kind=kind,
        external_id=external_id,
        name=name,
        status=status,
        host=Ref("node", node_id(cluster, str(resource["node"]))),
        labels={f"tag/{tag}": "true" for tag in tags},
        attributes=_compact(
            {
                "vmid": vmid,
                "cluster": cluster,
                "node": resource.get("node"),
                "template": template,
                "cpus": cpus,
                "memory_bytes": _int(resource.get("maxmem")),
                "disk_bytes": _int(resource.get("maxdisk")),
                "disks": config_disks(config),
                "tags": tags,
                "pool": resource.get("pool"),
                "ha_state": resource.get("hastate"),
                "lock": resource.get("lock") or config.get("lock"),
                "description": config.get("description"),
                "ostype": config.get("ostype"),
                "onboot": bool(_int(config.get("onboot"))) if config.get("onboot") is not None else None,
                "agent": agent_enabled(config) if kind == "qemu" and config_read else None,
                # Kept on the workload too (where they were before templates had a host).
                "mac_addresses": list(config_macs(config)) if template else None,
                "machine_uuid": smbios_uuid(config) if template else None,
            }
        ),
    )
    if not config_read:
        unread = _unread_attributes(GUEST_CONFIG_ATTRIBUTES + GUEST_LISTED_ATTRIBUTES, workload.attributes)
        if "template" not in resource:  # computed False above, yet unknown: the stored value stays
            unread |= {"attributes.template"}
        workload = replace(workload, unread=unread | ({"name"} if not name_known else set()))
    hostname = config.get("hostname") if kind == "lxc" else name
    host = Host(
        kind=host_kind(kind),
        external_id=external_id,
        name=name,
        status=status,
        hostname=str(hostname) if hostname else None,
        machine_uuid=smbios_uuid(config),
        mac_addresses=config_macs(config),
        addresses=tuple(addresses or ()),
        backed_by=Ref(kind, external_id),
        attributes={"vmid": vmid, "cluster": cluster},
        unread=frozenset(
            [
                *(() if config_read else GUEST_HOST_CONFIG_FIELDS[: 3 if kind == "lxc" else 2]),
                *(() if addresses_read else ("addresses",)),
                *(() if name_known else ("name", "hostname")),
            ]
        ),
    )
    return workload, host


# The status of a template, workload and host alike: declared inert by the connector's vocabulary.
TEMPLATE_STATUS = "template"


def host_kind(guest_kind: str) -> str:
    """The host kind of a guest: a qemu guest is a "vm", a container an "lxc"."""
    return "vm" if guest_kind == "qemu" else "lxc"


def pool_services(cluster: str, pool_ids: Iterable[str], guests: Iterable[Mapping[str, Any]]) -> list[Service]:
    """Pools with their member guests, from /cluster/resources alone (its guests carry their pool)."""
    members: dict[str, list[Ref]] = {pool: [] for pool in pool_ids}
    for guest in guests:
        pool = guest.get("pool")
        if pool:
            members.setdefault(str(pool), []).append(Ref(str(guest["type"]), guest_id(cluster, guest["vmid"])))
    return [
        Service(
            kind="pool",
            external_id=f"{cluster}/{pool}",
            name=pool,
            members=tuple(refs),
            attributes={"cluster": cluster, "guests": len(refs)},
        )
        for pool, refs in sorted(members.items())
    ]
