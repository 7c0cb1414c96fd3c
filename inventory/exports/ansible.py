"""Ansible's dynamic-inventory script protocol over the live hosts.

``--list`` answers every group and, under ``_meta.hostvars``, every host's variables,
so Ansible never calls ``--host`` once per host.

One Ansible host per machine: hosts of several sources that are one machine (the stored
machine links of inventory.machine_links: a Proxmox VM that is a Kubernetes node, an LXC
that runs a Docker engine) are one Ansible host, so ``ansible all`` reaches each machine
once. It is named after its first face (one with an address first, then by source, kind,
name), is in the groups of every face, and lists them all in ``inv_faces``.

Host names are unique: a name used by one machine only stays as it is; a name several
share becomes ``name@source``, and if that is still shared (two guests of one cluster with
one name), ``name@source-ID`` with the tail of the source's own id (a vmid, a short
container id). Both are derived from what the sources say, so they are the same from run
to run and database to database.

Groups (names reduced to Ansible's ``[A-Za-z0-9_]``, lower case): ``source_<name>``,
``type_<source type>``, ``kind_<source type>_<kind>`` (a Proxmox node and a Kubernetes
node are different things), ``status_<status>``, ``namespace_<ns>``, ``tag_<tag>`` and
``label_<key>_<value>``. Variables are prefixed ``inv_`` because ``inventory_*`` names
are Ansible's own (``inventory_hostname``).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from inventory.errors import NotFound
from inventory.exports.hosts import ExportHost, live_hosts

_INVALID_GROUP_CHARS = re.compile(r"[^a-z0-9_]+")
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def group_name(prefix: str, *parts: str) -> str:
    """``prefix_part_part`` with every run of characters Ansible does not allow in a group name made one ``_``."""
    text = "_".join([prefix, *parts]).lower()
    return _INVALID_GROUP_CHARS.sub("_", text).strip("_") or prefix


def _id_tail(external_id: str) -> str:
    tail = external_id.rstrip("/").rsplit("/", 1)[-1]
    # Long opaque ids (Docker's 64 hex digits, Kubernetes uids) are unique in far fewer characters.
    tail = tail[:12] if len(tail) > 12 else tail
    return _INVALID_NAME_CHARS.sub("_", tail)


def unique_names(hosts: Sequence[ExportHost]) -> dict[int, str]:
    """Host id -> a name no other host has (see the module docstring for the rule)."""
    by_name = Counter(h.name for h in hosts)
    qualified = {h.id: h.name if by_name[h.name] == 1 else f"{h.name}@{h.source}" for h in hosts}
    by_qualified = Counter(qualified.values())
    names = {}
    for host in hosts:
        name = qualified[host.id]
        if by_qualified[name] > 1:
            name = f"{name}-{_id_tail(host.external_id)}"
        names[host.id] = name
    # A tail shared too (ids that end alike) falls back to the inventory id, which is unique by definition.
    by_final = Counter(names.values())
    return {hid: (f"{name}-{hid}" if by_final[name] > 1 else name) for hid, name in names.items()}


@dataclass(frozen=True)
class Machine:
    """One Ansible host: the faces of one machine in every source that sees it, the one that names it first."""

    faces: tuple[ExportHost, ...]

    @property
    def primary(self) -> ExportHost:
        return self.faces[0]


def machines(hosts: Iterable[ExportHost]) -> list[Machine]:
    """The hosts grouped by the machine they are faces of, in the order of their primary face's id."""
    faces: dict[int, list[ExportHost]] = defaultdict(list)
    for host in hosts:
        faces[host.machine].append(host)
    found = [
        Machine(tuple(sorted(group, key=lambda h: (h.address is None, h.source, h.kind, h.name, h.id))))
        for group in faces.values()
    ]
    return sorted(found, key=lambda m: m.primary.id)


def host_groups(host: ExportHost) -> list[str]:
    groups = [
        group_name("source", host.source),
        group_name("type", host.source_type),
        group_name("kind", host.source_type, host.kind),
    ]
    if host.status:
        groups.append(group_name("status", host.status))
    if host.namespace:
        groups.append(group_name("namespace", host.namespace))
    groups += [group_name("tag", tag) for tag in host.tags]
    groups += [group_name("label", key, value) for key, value in host.labels.items() if key != "tags"]
    return sorted(set(groups))


def hostvars(host: ExportHost) -> dict[str, Any]:
    variables: dict[str, Any] = {
        "inv_id": host.id,
        "inv_source": host.source,
        "inv_source_type": host.source_type,
        "inv_kind": host.kind,
        "inv_external_id": host.external_id,
        "inv_name": host.name,
        "inv_status": host.status,
        "inv_hostname": host.hostname,
        "inv_machine_uuid": host.machine_uuid,
        "inv_addresses": list(host.addresses),
        "inv_mac_addresses": list(host.mac_addresses),
        "inv_namespace": host.namespace,
        "inv_tags": list(host.tags),
        "inv_labels": dict(host.labels),
        "inv_attributes": dict(host.attributes),
    }
    address = host.address or host.hostname
    if address:
        variables["ansible_host"] = address
    return variables


def machine_vars(machine: Machine) -> dict[str, Any]:
    """The primary face's variables, the tags of every face, every face named, the first address any face has."""
    variables = hostvars(machine.primary)
    variables["inv_tags"] = sorted({tag for face in machine.faces for tag in face.tags})
    variables["inv_faces"] = [
        {"source": f.source, "source_type": f.source_type, "kind": f.kind, "id": f.id, "name": f.name}
        for f in machine.faces
    ]
    address = next((f.address for f in machine.faces if f.address), None)
    if address:
        variables["ansible_host"] = address
    return variables


def build_list(session: Session, *, sources: Sequence[str] = (), kinds: Sequence[str] = ()) -> dict[str, Any]:
    """The ``--list`` document: groups with their hosts, and ``_meta.hostvars`` for every machine."""
    found = machines(live_hosts(session, sources=sources, kinds=kinds))
    names = unique_names([m.primary for m in found])
    members: dict[str, list[str]] = defaultdict(list)
    variables: dict[str, dict[str, Any]] = {}
    for machine in found:
        name = names[machine.primary.id]
        variables[name] = machine_vars(machine)
        for group in sorted({g for face in machine.faces for g in host_groups(face)}):
            members[group].append(name)
    document: dict[str, Any] = {group: {"hosts": sorted(members[group])} for group in sorted(members)}
    document["_meta"] = {"hostvars": dict(sorted(variables.items()))}
    return document


def host_vars(session: Session, name: str, *, sources: Sequence[str] = (), kinds: Sequence[str] = ()) -> dict[str, Any]:
    """The ``--host NAME`` document: that host's variables, by the unique name ``--list`` gives it."""
    hostvars_by_name = build_list(session, sources=sources, kinds=kinds)["_meta"]["hostvars"]
    try:
        return hostvars_by_name[name]
    except KeyError:
        raise NotFound(f"no host named {name!r} in the Ansible inventory (see `inventory ansible --list`)") from None
