"""Prometheus service discovery: target groups for file_sd (a JSON file) and http_sd (the same JSON over HTTP).

One group per scrape target: ``[{"targets": ["192.168.1.101:9100"], "labels": {...}}]``.
A target is a host's best address (see inventory.exports.hosts) with the port given
(9100, node_exporter's, unless told). One machine seen by several sources (a VM that is
also a Kubernetes node) has one address: it becomes one target, labelled from the first
host in (source, name, id) order, with every source that sees it in ``sources``, so the
same exporter is never scraped twice. Hosts without an address are left out.

Label names follow Prometheus' rule ``[a-zA-Z_][a-zA-Z0-9_]*`` and never start with
``__`` (reserved for Prometheus' own); values are strings.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from inventory.errors import UsageError
from inventory.exports.hosts import ExportHost, live_hosts

DEFAULT_PORT = 9100
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]+")


def label_name(text: str) -> str:
    """A valid, non-reserved Prometheus label name for ``text``."""
    name = _INVALID_LABEL_CHARS.sub("_", text).lstrip("_")
    if not name or name[0].isdigit():
        name = f"l_{name}"
    return name


def target_address(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ipaddress.ip_address(address).version == 6 else f"{address}:{port}"


def _labels(host: ExportHost, sources: list[str]) -> dict[str, str]:
    labels = {
        "inventory_id": str(host.id),
        "source": host.source,
        "sources": ",".join(sources),
        "kind": host.kind,
        "name": host.name,
        "status": host.status or "",
    }
    if host.hostname:
        labels["hostname"] = host.hostname
    if host.tags:
        labels["tags"] = "," + ",".join(host.tags) + ","  # leading and trailing commas: a regex can match ",prod,"
    for key, value in sorted(host.labels.items()):
        labels.setdefault(f"label_{label_name(key)}", str(value))
    return labels


def target_groups(
    session: Session, *, port: int = DEFAULT_PORT, sources: Sequence[str] = (), kinds: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The file_sd / http_sd document as a list, ready for ``json.dumps``."""
    if not 1 <= port <= 65535:
        raise UsageError(f"--port must be 1-65535, got {port}")
    by_target: dict[str, list[ExportHost]] = {}
    for host in live_hosts(session, sources=sources, kinds=kinds):
        address = host.address
        if address is not None:
            by_target.setdefault(target_address(address, port), []).append(host)
    groups = []
    for target, hosts in sorted(by_target.items()):
        seen_by = sorted({h.source for h in hosts})
        groups.append({"targets": [target], "labels": _labels(hosts[0], seen_by)})
    return groups
