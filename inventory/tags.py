"""Tags as sources give them, read the same way everywhere (policy protection, exports, impact)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def tags_of(*mappings: Mapping[str, Any] | None) -> list[str]:
    """The ``tags`` of each mapping (attributes or labels): a list, or Proxmox's "a;b" text (commas too)."""
    found: set[str] = set()
    for mapping in mappings:
        raw = (mapping or {}).get("tags")
        if isinstance(raw, str):
            found.update(t.strip() for t in re.split(r"[;,]", raw) if t.strip())
        elif isinstance(raw, (list, tuple)):
            found.update(str(t) for t in raw if str(t).strip())
    return sorted(found)
