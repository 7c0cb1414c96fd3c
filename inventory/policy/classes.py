"""The three classes of tool calls, ordered by how much harm a call can do."""

from __future__ import annotations

from enum import Enum


class ToolClass(str, Enum):
    READ_ONLY = "READ_ONLY"
    SAFE_MUTATE = "SAFE_MUTATE"
    DESTRUCTIVE = "DESTRUCTIVE"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __str__(self) -> str:
        return self.value


_RANK = {ToolClass.READ_ONLY: 0, ToolClass.SAFE_MUTATE: 1, ToolClass.DESTRUCTIVE: 2}


def mcp_hints(tool_class: ToolClass, *, idempotent: bool = False) -> dict[str, bool]:
    """MCP tool annotations, derived from our own classification (hints from a caller are never trusted).

    ``idempotent`` is what the tool's own declaration says; a read is always idempotent.
    """
    return {
        "readOnlyHint": tool_class is ToolClass.READ_ONLY,
        "destructiveHint": tool_class is ToolClass.DESTRUCTIVE,
        "idempotentHint": tool_class is ToolClass.READ_ONLY or idempotent,
    }
