"""`inventory check`: reach each configured source read-only and say what a sync would read; writes nothing.

A check runs the connector's own collection (the same calls a sync makes, all of
them reads) and stops there: no database is opened, no lock taken, no run recorded.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from inventory.config import Config
from inventory.connector import ConnectorRegistry
from inventory.errors import ConnectorUnavailable, SourceError

# ok: every resource was read | partial: reached, but some resources were refused or failed
# (permissions, usually) | failed: not reached, not authenticated, or the connector is unavailable
CheckStatus = Literal["ok", "partial", "failed"]


@dataclass(frozen=True)
class CheckResult:
    source: str
    type: str
    status: CheckStatus
    detail: str
    hosts: int = 0
    workloads: int = 0
    services: int = 0
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_row(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "type": self.type,
            "status": self.status,
            "hosts": self.hosts,
            "workloads": self.workloads,
            "services": self.services,
            "objects": self.hosts + self.workloads + self.services,
            "time": f"{self.duration:.2f}s",
            "detail": self.detail,
        }


def check_sources(config: Config, registry: ConnectorRegistry, names: Iterable[str] | None = None) -> list[CheckResult]:
    from inventory.sync import select_sources

    return [check_source(source, registry) for source in select_sources(config, names)]


def check_source(source: Any, registry: ConnectorRegistry) -> CheckResult:
    from inventory.sync import collect

    started = time.monotonic()
    try:
        connector = registry.get(source.type)(source)
        snapshot = collect(connector)
    except (SourceError, ConnectorUnavailable) as exc:
        reason = exc.reason if isinstance(exc, SourceError) else str(exc)
        return CheckResult(source.name, source.type, "failed", reason, duration=time.monotonic() - started)
    counts = {"hosts": len(snapshot.hosts), "workloads": len(snapshot.workloads), "services": len(snapshot.services)}
    would_read = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    status: CheckStatus
    if snapshot.complete:
        detail, status = f"reachable, authenticated; would read {would_read}", "ok"
    else:
        detail, status = (
            f"reachable, but not everything is readable ({'; '.join(snapshot.errors)}); would read {would_read}",
            "partial",
        )
    return CheckResult(source.name, source.type, status, detail, duration=time.monotonic() - started, **counts)
