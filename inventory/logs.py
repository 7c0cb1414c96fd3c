"""Log line formats: plain text for people, one JSON object per line for log shippers."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inventory.outcome import SourceOutcome

# Fields a log line may carry beside its message (``extra=``): a log shipper filters and sums them
# without parsing the text.
LOG_FIELDS = (
    "source",
    "phase",
    "status",
    "objects",
    "objects_created",
    "objects_updated",
    "objects_removed",
    "objects_revived",
    "objects_unchanged",
    "failures",
    "duration_seconds",
    "retry_in_seconds",
)


def outcome_fields(outcome: SourceOutcome, **more: Any) -> dict[str, Any]:
    """The ``extra=`` of a sync outcome's log line: source, status, counts and duration as fields."""
    fields: dict[str, Any] = {
        "source": outcome.source,
        "status": outcome.status,
        "objects": outcome.objects,
        "duration_seconds": round(outcome.duration, 3),
    }
    if outcome.result is not None:
        for action in ("created", "updated", "removed", "revived", "unchanged"):
            fields[f"objects_{action}"] = getattr(outcome.result, action)  # "created" is a LogRecord attribute
    return {**fields, **more}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in LOG_FIELDS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
