"""Durations ("90s", "5m", "1h30m", "7d") and instants ("1d" ago, or an ISO time)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_duration(text: str | float | int) -> float:
    """Seconds in a duration such as ``5m``, ``1h30m``, ``45`` (plain numbers are seconds)."""
    if isinstance(text, (int, float)):
        return float(text)
    value = text.strip().lower()
    try:
        return float(value)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or not value:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h30m, 7d)")
    return total


def format_seconds(seconds: float) -> str:
    """A duration as people write it: 45s, 10m, 1h30m, 0.5s."""
    if seconds < 60:
        return f"{seconds:g}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if value)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An instant: a duration means that long ago; otherwise an ISO 8601 date or time (UTC if naive)."""
    now = now or utcnow()
    try:
        seconds = parse_duration(text)
    except ValueError:
        pass
    else:
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise ValueError(f"{text!r} reaches before the year 1") from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a duration or ISO time: {text!r} (use e.g. 1h, 7d, 2026-11-01T12:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_period(
    since: str | None, until: str | None = None, now: datetime | None = None
) -> tuple[datetime | None, datetime | None]:
    """``--since``/``--until`` as instants; a period that can hold nothing (it starts in the future, or ends
    before it starts) is a ValueError that says so, rather than an empty answer."""
    now = now or utcnow()
    since_at = parse_since(since, now) if since is not None else None
    until_at = parse_since(until, now) if until is not None else None
    if since_at is not None and since_at > now:
        raise ValueError(f"since {since} is in the future (now is {now.isoformat(timespec='seconds')})")
    if since_at is not None and until_at is not None and until_at <= since_at:
        raise ValueError(
            f"until {until} ({until_at.isoformat(timespec='seconds')}) is not after "
            f"since {since} ({since_at.isoformat(timespec='seconds')})"
        )
    return since_at, until_at
