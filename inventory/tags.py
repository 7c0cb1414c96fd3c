"""Tags as sources give them, read the same way everywhere (policy protection, exports, impact).

Tags are compared case-insensitively (``tag_key``): Proxmox VE treats tags that differ only in case as
one tag by default, and a protection rule for ``prod`` must not be escaped by tagging a VM ``Prod``.
They are shown as the source spells them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
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


def tag_key(tag: str) -> str:
    """How two tags (or a tag and a policy's protected tag) are compared: case-folded."""
    return tag.casefold()


def tags_matching(tags: Iterable[str], wanted: Iterable[str]) -> list[str]:
    """The ``tags`` (as spelled) that are one of ``wanted``, compared case-insensitively."""
    keys = {tag_key(w) for w in wanted}
    return sorted(t for t in tags if tag_key(t) in keys)
