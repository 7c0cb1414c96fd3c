"""`inventory check`: reach each configured source read-only and say what a sync would read; writes nothing.

A check runs the connector's own collection (the same calls a sync makes, all of
them reads) and stops there: no database is opened, no lock taken, no run recorded.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from inventory.config import Config
from inventory.connector import ConnectorRegistry
from inventory.errors import ConnectorUnavailable, SourceError
from inventory.outcome import bounded, summarize_problems

# ok: every resource the source should read was read; it may carry warnings, facts such as a node
# found down or a kind the account may not list, as a sync that succeeds does | partial: reached,
# but a resource that should have been read failed | forbidden: reached and authenticated, but the
# credentials may read none of it (a sync would be ``forbidden`` too) | failed: not reached, not
# authenticated, or the connector is unavailable. Every failure names the call and the limit it hit.
CheckStatus = Literal["ok", "partial", "forbidden", "failed"]


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
    warnings: tuple[str, ...] = ()

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
            "warnings": list(self.warnings),
        }


def check_sources(config: Config, registry: ConnectorRegistry, names: Iterable[str] | None = None) -> list[CheckResult]:
    """Check the selected sources, ``sync.concurrency`` at once (as a sync collects them); results in source order."""
    from inventory.sync import select_sources

    sources = select_sources(config, names)
    registry.load_sdks(source.type for source in sources)  # in this thread, before the pool starts
    workers = min(config.sync.concurrency, len(sources))
    if workers <= 1:
        return [check_source(source, registry) for source in sources]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check") as pool:
        return list(pool.map(lambda source: check_source(source, registry), sources))


def check_source(source: Any, registry: ConnectorRegistry) -> CheckResult:
    from inventory.redact import redact_text
    from inventory.sync import collect

    started = time.monotonic()
    try:
        connector = registry.get(source.type)(source)
        snapshot = collect(connector)
    except (SourceError, ConnectorUnavailable) as exc:
        reason = exc.reason if isinstance(exc, SourceError) else str(exc)
        return CheckResult(source.name, source.type, "failed", bounded(reason), duration=time.monotonic() - started)
    counts = {"hosts": len(snapshot.hosts), "workloads": len(snapshot.workloads), "services": len(snapshot.services)}
    would_read = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    warnings = tuple(redact_text(w) for w in snapshot.facts)
    status: CheckStatus
    if snapshot.nothing_readable:  # the one rule a sync applies (SyncStatus.FORBIDDEN)
        detail, status = (
            bounded(redact_text(f"reachable, authenticated, but {snapshot.unreadable_reason()}")),
            "forbidden",
        )
    elif snapshot.errors or not snapshot.complete:
        problems = "; ".join(summarize_problems(snapshot.errors)) or "the answer is incomplete"
        detail, status = (
            bounded(f"reachable, but not everything is readable ({problems}); would read {would_read}"),
            "partial",
        )
    else:
        detail, status = f"reachable, authenticated; would read {would_read}", "ok"
    if warnings:
        detail = f"{detail}; note: {'; '.join(warnings)}"
    duration = time.monotonic() - started
    return CheckResult(source.name, source.type, status, detail, duration=duration, warnings=warnings, **counts)
