"""Who is acting: ``--actor``, else INVENTORY_ACTOR, else the OS user."""

from __future__ import annotations

import getpass
import os

ACTOR_ENV = "INVENTORY_ACTOR"


def resolve_actor(explicit: str | None = None) -> str:
    actor = explicit or os.environ.get(ACTOR_ENV)
    if actor:
        return actor.strip()
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (a container running under an arbitrary uid)
        return f"uid:{os.getuid()}"
