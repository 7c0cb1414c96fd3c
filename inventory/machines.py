"""Which hosts of different sources are one machine: the one rule, as pure functions over host facts.

A Proxmox VM that is also a Kubernetes node and a Docker host is one machine seen
three times; each source keeps its own row, and the link is made here. The rule,
first match wins: the SMBIOS / system uuid (case-insensitive), then a shared MAC
address (case-insensitive), then the short hostname (the hostname, or the name where
there is none, up to the first dot, case-insensitive). Hosts of one source are never
matched with each other: a source tells its own objects apart by their identity.
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
    MAC_ADDRESS = "mac_address"
    HOSTNAME = "hostname"


RULE_ORDER = {rule: i for i, rule in enumerate(MatchRule)}


@dataclass(frozen=True)
class HostFacts:
    """What the rule reads of a host; ``id`` and ``source_id`` only tell hosts and sources apart."""

    id: int
    source_id: int
    name: str
    hostname: str | None = None
    machine_uuid: str | None = None
    mac_addresses: Sequence[str] = ()
    _uuid: str | None = field(init=False, repr=False, compare=False)
    _macs: frozenset[str] = field(init=False, repr=False, compare=False)
    _short_name: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_uuid", self.machine_uuid.lower() if self.machine_uuid else None)
        object.__setattr__(self, "_macs", frozenset(m.lower() for m in self.mac_addresses if m))
        name = self.hostname or self.name
        object.__setattr__(self, "_short_name", name.split(".", 1)[0].lower() if name else None)


@dataclass(frozen=True)
class MachineMatch:
    """Two hosts of different sources that are one machine, and the rule that said so."""

    host_id: int
    other_id: int
    rule: MatchRule


def match_rule(host: HostFacts, other: HostFacts) -> MatchRule | None:
    """The rule by which two hosts are one machine, or None."""
    if host.source_id == other.source_id:
        return None
    if host._uuid and host._uuid == other._uuid:
        return MatchRule.MACHINE_UUID
    if host._macs & other._macs:
        return MatchRule.MAC_ADDRESS
    if host._short_name and host._short_name == other._short_name:
        return MatchRule.HOSTNAME
    return None


def same_machine(host: HostFacts, candidates: Iterable[HostFacts]) -> list[MachineMatch]:
    """The candidates that are the same machine as ``host``, strongest rule first."""
    found = []
    for other in candidates:
        rule = match_rule(host, other)
        if rule is not None:
            found.append(MachineMatch(host.id, other.id, rule))
    return sorted(found, key=lambda m: RULE_ORDER[m.rule])


def machine_matches(hosts: Iterable[HostFacts]) -> list[MachineMatch]:
    """Every pair of hosts that are one machine, each pair once (lower id first), in bulk.

    Hosts are bucketed by uuid, MAC and short hostname, so that only hosts sharing at
    least one of them are compared: linear in the number of hosts, not quadratic.
    """
    by_id: dict[int, HostFacts] = {}
    buckets: dict[tuple[MatchRule, str], list[int]] = defaultdict(list)
    for host in hosts:
        by_id[host.id] = host
        if host._uuid:
            buckets[(MatchRule.MACHINE_UUID, host._uuid)].append(host.id)
        for mac in host._macs:
            buckets[(MatchRule.MAC_ADDRESS, mac)].append(host.id)
        if host._short_name:
            buckets[(MatchRule.HOSTNAME, host._short_name)].append(host.id)
    pairs = {pair for ids in buckets.values() if len(ids) > 1 for pair in combinations(sorted(set(ids)), 2)}
    matches = []
    for host_id, other_id in sorted(pairs):
        rule = match_rule(by_id[host_id], by_id[other_id])
        if rule is not None:
            matches.append(MachineMatch(host_id, other_id, rule))
    return matches


@dataclass(frozen=True)
class Machine:
    """Hosts that are one machine, linked through any chain of matches, and the rules that linked them."""

    host_ids: tuple[int, ...]
    rules: frozenset[MatchRule]

    @property
    def matched_by(self) -> MatchRule:
        """The strongest rule among the links."""
        return min(self.rules, key=RULE_ORDER.__getitem__)


def machines(hosts: Iterable[HostFacts]) -> list[Machine]:
    """The machines that two or more hosts are, ordered by their lowest host id."""
    parent: dict[int, int] = {}

    def root(host_id: int) -> int:
        while parent.get(host_id, host_id) != host_id:
            host_id = parent[host_id]
        return host_id

    matches = machine_matches(hosts)
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
