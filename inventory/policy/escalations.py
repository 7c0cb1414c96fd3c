"""Escalation sources the policy engine consults beside the protection rules.

ImpactEscalation: a call that changes a host or a workload is escalated to DESTRUCTIVE,
as if its target were protected, when what goes with the target (inventory.impact)
reaches a protected namespace, tag or label, or a service with an SLO. Whatever the
outcome, the impact summary of a call with any impact goes into the audit entry and the
approval request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inventory.policy.engine import Escalated, protection_reasons
from inventory.policy.rules import Policy
from inventory.policy.targets import Target

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from inventory.impact import Impact
    from inventory.storage.database import Database

# At most this many reasons and names in an audit entry: the summary line carries the counts.
_LISTED = 10

# The services with an SLO that an impact reaches: (session, impact) -> ["plex (SLO 99.9%)"].
SloLookup = Callable[["Session", "Impact"], list[str]]


@dataclass
class ImpactEscalation:
    db: Database
    slo_services: SloLookup | None = None

    def __call__(self, target: Target, policy: Policy) -> Escalated | None:
        from inventory.impact import impact_of

        if target.object_type not in ("host", "workload"):
            return None

        with self.db.session() as session:
            impact = impact_of(session, target.object_type, target.id)
            slo = self.slo_services(session, impact) if self.slo_services else []
        if impact.empty and not slo:
            return None
        reasons: list[str] = []
        for obj in impact.objects:
            for why in protection_reasons(obj.target, policy):
                reasons.append(f"its impact reaches {obj.object_type} {obj.label}: {why}")
        reasons += [f"its impact reaches logical service {name}" for name in slo]
        details: dict[str, Any] = {
            "summary": impact.summary(),
            "hosts": len(impact.hosts),
            "workloads": len(impact.workloads),
            "services": len(impact.services),
            "services_down": [s.service.label for s in impact.services_down[:_LISTED]],
        }
        if reasons:
            details["escalated_by"] = _capped(reasons)
        return Escalated(tuple(_capped(reasons)), {"impact": details})


def _capped(lines: Sequence[str]) -> list[str]:
    return [*lines[:_LISTED], f"... and {len(lines) - _LISTED} more"] if len(lines) > _LISTED else list(lines)
