"""Backups and restore: `inventory db backup|restore` (take.py, restore.py), the signed manifest beside each
backup (manifest.py), PostgreSQL's own tools (pg_tools.py) and the loop's scheduled backups (schedule.py)."""
