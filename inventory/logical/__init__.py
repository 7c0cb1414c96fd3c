"""Logical services: services declared in config whose members are objects of any source.

    spec.py    the ``services:`` section of the config (validated with the rest of it)
    status.py  members, status and measured availability, computed from the database at query time

They are computed when asked, not stored as rows of a pseudo-source: a selector is a
query over rows every sync already keeps current, the availability comes from the
status changes those syncs already record for each member, and an edited config takes
effect at once (a stored copy would be stale until the next sync and would need the sync
engine to reconcile a source that reads nothing).
"""
