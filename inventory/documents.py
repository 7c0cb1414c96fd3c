"""The documents `inventory impact -o json` and `inventory report -o json` print, which REST and MCP answer too.

Apart from impact.py and report.py: the logical services they name import both of those.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from inventory.errors import UsageError
from inventory.impact import Impact, impact
from inventory.report import build_report


def impact_document(session: Session, text: str, logical_services: Sequence[Any] = ()) -> dict[str, Any]:
    """What goes with ``text`` (a host or workload), with the config's logical services it reaches."""
    return impact_as_document(session, impact(session, text), logical_services)


def impact_as_document(session: Session, result: Impact, logical_services: Sequence[Any] = ()) -> dict[str, Any]:
    document = result.as_dict()
    if logical_services:
        from inventory.logical.status import logical_services_of

        document["logical_services"] = logical_services_of(session, logical_services, result)
    return document


def report_document(session: Session, since: str, logical_services: Sequence[Any] = ()) -> dict[str, Any]:
    """The report of changes since ``since`` (a duration or an ISO time), with the logical services' states."""
    from inventory.timeutil import parse_period

    try:
        since_at, _ = parse_period(since)
        assert since_at is not None  # a period's start is always given here
    except ValueError as exc:
        raise UsageError(f"since: {exc}") from None
    report = build_report(session, since=since_at)
    if logical_services:
        from inventory.logical.status import evaluate_all

        report["logical_services"] = [state.row() for state in evaluate_all(session, logical_services)]
    return report
