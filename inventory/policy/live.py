"""Re-reading a tool's target at its source, just before a call that changes something.

The inventory is as old as the last sync: since then a guest may have been renamed and
tagged ``prod``, its vmid given to another guest, a pod replaced under the same name.
Each connector declares a ``LiveLookup`` beside its tools: ``describe`` reads the object
now (one or two cheap API calls) and returns it as a Target built from the source's
answer (None when the object is gone); ``identity`` names the facts that say which
object a Target is (a vmid and an SMBIOS uuid, a uid, a container id). The caller
compares identities, refuses a call whose target is another object, and classifies and
decides on the live target. A source that cannot be read refuses the call (fail closed).

After a call ran on a source nobody follows live, ``read`` (where the connector declares it) reads
the target again for the closed loop (inventory/reread.py): the one object as a delta ``Snapshot``
holding the records a sync builds for it (or declaring it deleted when the source says it is gone).
The connector only reads; the core writes what it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from inventory.errors import InventoryError, SourceError, TargetChanged
from inventory.policy.targets import Target
from inventory.records import Snapshot

Identity = Mapping[str, str]


@dataclass(frozen=True)
class LiveLookup:
    # (the inventory's target, the source's SourceConfig) -> the object as the source has it now, or None if gone.
    # Raises SourceError (naming the source) when the source cannot be read.
    describe: Callable[[Target, Any], Target | None]
    # The facts that say which object a target is, from the inventory's target or a live one.
    identity: Callable[[Target], Identity]
    # (the call's target, the source's SourceConfig) -> a delta snapshot of that one object as a sync records it
    # (``Snapshot.changes``; deleted when gone). Raises SourceError (naming the source) when the source cannot be
    # read. None: the connector cannot re-read its objects, and a call on a source nobody follows is not observed.
    read: Callable[[Target, Any], Snapshot] | None = None


def reread(lookup: LiveLookup, target: Target, source_config: Any, expected: Identity | None = None) -> Target:
    """``target`` as its source has it now, if it is still the same object (``expected``: the inventory's identity)."""
    try:
        live = lookup.describe(target, source_config)
    except SourceError as exc:
        reason = f"{exc.reason}; the target could not be re-read, so nothing was run"
        raise SourceError(exc.source, exc.resource, reason) from None
    except Exception as exc:  # a connector's describe must not let a call through by failing oddly: refuse it
        what = str(exc) if isinstance(exc, InventoryError) else f"{type(exc).__name__}: {exc}"
        reason = f"the target could not be re-read ({what}), so nothing was run"
        raise SourceError(target.source, target.ref, reason) from None
    wanted = dict(expected if expected is not None else lookup.identity(target))
    if live is None:
        raise TargetChanged(
            f"{target.ref} ({target.name}) no longer exists at source {target.source!r}; nothing was run",
            {"live_target": None, "expected_identity": wanted},
        )
    found = dict(lookup.identity(live))
    differs = sorted(key for key, value in wanted.items() if found.get(key) != value)
    if differs:
        changes = ", ".join(f"{key} {wanted[key]!r} expected, {found.get(key)!r} found" for key in differs)
        raise TargetChanged(
            f"{target.ref} ({target.name}) is another object at source {target.source!r} now ({changes}): "
            "refused, nothing was run; sync the source and name the target again",
            {"live_target": describe_live(live, found), "expected_identity": wanted},
        )
    return live


def describe_live(live: Target, identity: Identity) -> dict[str, Any]:
    """What the audit entry keeps of the live target: what it is and what classified it."""
    return {
        "identity": dict(identity),
        "name": live.name,
        "namespace": live.namespace,
        "labels": dict(live.labels),
        "tags": sorted(live.tags),
    }
