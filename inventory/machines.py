"""Which hosts of different sources are one machine: the one rule, as pure functions over host facts.

A Proxmox VM that is also a Kubernetes node and a Docker host is one machine seen
three times; each source keeps its own row, and the link is made here (and stored by
``inventory.machine_links`` at each sync). The rule, first match wins:

1. the SMBIOS / system uuid, case-insensitive (a VM's SMBIOS uuid is the Kubernetes
   node's systemUUID);
2. the provider id: a host's cloud-provider id as its connector reads it (``Connector.provider_id``:
   a Kubernetes node's ``spec.providerID``, the id a hypervisor's cloud controller gives a guest);
3. a shared MAC address, case-insensitive;
4. the short hostname (the hostname, or the name where there is none, up to the first dot,
   case-insensitive) together with a shared address: a name alone is not evidence, two
   machines called ``web`` in two places are common.

Hosts of one source are never matched with each other: a source tells its own objects
apart by their identity. A uuid that several hosts of ONE source share (the nodes of a
kind cluster, cloned VMs that kept their SMBIOS uuid) says nothing about which machine
is which: it matches nothing and is reported as ambiguous; the weaker rules still apply.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import combinations


class MatchRule(StrEnum):
    # Declared in the order they are tried: the strongest evidence first.
    MACHINE_UUID = "machine_uuid"
    PROVIDER_ID = "provider_id"
    MAC_ADDRESS = "mac_address"
    HOSTNAME_ADDRESS = "hostname_address"


RULE_ORDER = {rule: i for i, rule in enumerate(MatchRule)}


def _address(text: str) -> str:
    # Guests report 192.168.1.10/24; the address is what two sources can agree on.
    return text.split("/", 1)[0].strip().lower()


@dataclass(frozen=True)
class HostFacts:
    """What the rule reads of a host; ``id`` and ``source_id`` only tell hosts and sources apart."""

    id: int
    source_id: int
    name: str
    hostname: str | None = None
    machine_uuid: str | None = None
    mac_addresses: Sequence[str] = ()
    addresses: Sequence[str] = ()
    provider_id: str | None = None
    _uuid: str | None = field(init=False, repr=False, compare=False)
    _provider: str | None = field(init=False, repr=False, compare=False)
    _macs: frozenset[str] = field(init=False, repr=False, compare=False)
    _addresses: frozenset[str] = field(init=False, repr=False, compare=False)
    _short_name: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_uuid", self.machine_uuid.lower() if self.machine_uuid else None)
        object.__setattr__(self, "_provider", self.provider_id.lower() if self.provider_id else None)
        object.__setattr__(self, "_macs", frozenset(m.lower() for m in self.mac_addresses if m))
        object.__setattr__(self, "_addresses", frozenset(_address(a) for a in self.addresses if a))
        name = self.hostname or self.name
        object.__setattr__(self, "_short_name", name.split(".", 1)[0].lower() if name else None)


@dataclass(frozen=True)
class MachineMatch:
    """Two hosts of different sources that are one machine, and the rule that said so."""

    host_id: int
    other_id: int
    rule: MatchRule


@dataclass(frozen=True)
class AmbiguousUuid:
    """A machine uuid that several hosts of one source share: no evidence of anything."""

    source_id: int
    uuid: str
    host_ids: tuple[int, ...]


def match_rule(host: HostFacts, other: HostFacts, ambiguous: frozenset[str] = frozenset()) -> MatchRule | None:
    """The rule by which two hosts are one machine, or None; ``ambiguous`` uuids match nothing."""
    if host.source_id == other.source_id:
        return None
    if host._uuid and host._uuid == other._uuid and host._uuid not in ambiguous:
        return MatchRule.MACHINE_UUID
    if host._provider and host._provider == other._provider:
        return MatchRule.PROVIDER_ID
    if host._macs & other._macs:
        return MatchRule.MAC_ADDRESS
    if host._short_name and host._short_name == other._short_name and host._addresses & other._addresses:
        return MatchRule.HOSTNAME_ADDRESS
    return None


def ambiguous_uuids(hosts: Iterable[HostFacts]) -> list[AmbiguousUuid]:
    """The uuids that two or more hosts of one source share, by source and uuid."""
    holders: dict[tuple[int, str], list[int]] = defaultdict(list)
    for host in hosts:
        if host._uuid:
            holders[(host.source_id, host._uuid)].append(host.id)
    return [
        AmbiguousUuid(source_id, uuid, tuple(sorted(ids)))
        for (source_id, uuid), ids in sorted(holders.items())
        if len(ids) > 1
    ]


@dataclass(frozen=True)
class Machine:
    """Hosts that are one machine, linked through any chain of matches, and the rules that linked them.

    Its id is its lowest host id: stable for as long as that host is seen.
    """

    host_ids: tuple[int, ...]
    rules: frozenset[MatchRule]

    @property
    def id(self) -> int:
        return self.host_ids[0]

    @property
    def matched_by(self) -> MatchRule:
        """The strongest rule among the links."""
        return min(self.rules, key=RULE_ORDER.__getitem__)


@dataclass(frozen=True)
class MachineGraph:
    """Every link between hosts that are one machine, the machines they make, and the uuids that matched nothing."""

    matches: list[MachineMatch]
    machines: list[Machine]
    ambiguous: list[AmbiguousUuid]

    def machine_of(self) -> dict[int, int]:
        """Each linked host's machine id."""
        return {host_id: machine.id for machine in self.machines for host_id in machine.host_ids}


def link_machines(hosts: Iterable[HostFacts]) -> MachineGraph:
    """The whole graph, in bulk.

    Hosts are bucketed by uuid, provider id, MAC and short hostname, so that only hosts
    sharing at least one of them are compared: linear in the number of hosts, not quadratic.
    """
    by_id: dict[int, HostFacts] = {host.id: host for host in hosts}
    ambiguous = ambiguous_uuids(by_id.values())
    unusable = frozenset(a.uuid for a in ambiguous)
    buckets: dict[tuple[MatchRule, str], list[int]] = defaultdict(list)
    for host in by_id.values():
        if host._uuid and host._uuid not in unusable:
            buckets[(MatchRule.MACHINE_UUID, host._uuid)].append(host.id)
        if host._provider:
            buckets[(MatchRule.PROVIDER_ID, host._provider)].append(host.id)
        for mac in host._macs:
            buckets[(MatchRule.MAC_ADDRESS, mac)].append(host.id)
        if host._short_name and host._addresses:
            buckets[(MatchRule.HOSTNAME_ADDRESS, host._short_name)].append(host.id)
    pairs = {pair for ids in buckets.values() if len(ids) > 1 for pair in combinations(sorted(set(ids)), 2)}
    matches = []
    for host_id, other_id in sorted(pairs):
        rule = match_rule(by_id[host_id], by_id[other_id], unusable)
        if rule is not None:
            matches.append(MachineMatch(host_id, other_id, rule))
    return MachineGraph(matches, _group(matches), ambiguous)


def machine_matches(hosts: Iterable[HostFacts]) -> list[MachineMatch]:
    """Every pair of hosts that are one machine, each pair once (lower id first)."""
    return link_machines(hosts).matches


def machines(hosts: Iterable[HostFacts]) -> list[Machine]:
    """The machines that two or more hosts are, ordered by their lowest host id."""
    return link_machines(hosts).machines


def _group(matches: Sequence[MachineMatch]) -> list[Machine]:
    parent: dict[int, int] = {}

    def root(host_id: int) -> int:
        while parent.get(host_id, host_id) != host_id:
            host_id = parent[host_id]
        return host_id

    for match in matches:
        a, b = root(match.host_id), root(match.other_id)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = defaultdict(list)
    for host_id in parent.keys() | set(parent.values()):
        groups[root(host_id)].append(host_id)
    rules: dict[int, set[MatchRule]] = defaultdict(set)
    for match in matches:
        rules[root(match.host_id)].add(match.rule)
    return [Machine(tuple(sorted(groups[r])), frozenset(rules[r])) for r in sorted(groups)]
