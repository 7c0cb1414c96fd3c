"""Scheduled backups beside the sync loop (``backup:`` in the config; off unless ``backup.dir`` is set).

Every ``backup.interval`` (default 1d) a backup named ``inventory-<UTC time>.db.gz`` (SQLite) or
``.pgdump`` (PostgreSQL) is written to ``backup.dir``, and the oldest beyond ``backup.keep``
(default 30) are deleted with their manifests. When the next one is due is read from the newest
file's name, so a restart neither skips one nor takes an extra one. A failure is logged as a
warning and retried after at most ``RETRY_SECONDS``; it never stops a sync.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from inventory.backup.manifest import manifest_path
from inventory.backup.take import create_backup
from inventory.config import BackupSettings, Config
from inventory.redact import redact_text
from inventory.storage.database import Database

log = logging.getLogger(__name__)

STAMP = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"^inventory-(\d{8}T\d{6}Z)\.(db\.gz|pgdump)$")
EXTENSIONS = {"sqlite": "db.gz", "postgresql": "pgdump"}
RETRY_SECONDS = 600.0
# How long stopping the loop waits for a backup in progress.
STOP_WAIT_SECONDS = 30.0


def backup_name(engine: str, at: datetime) -> str:
    return f"inventory-{at.astimezone(UTC).strftime(STAMP)}.{EXTENSIONS[engine]}"


def scheduled_files(directory: Path) -> list[tuple[datetime, Path]]:
    """The scheduled backups in ``directory``, oldest first (other files are never touched)."""
    found = []
    for path in directory.glob("inventory-*"):
        match = _NAME.match(path.name)
        if match:
            found.append((datetime.strptime(match.group(1), STAMP).replace(tzinfo=UTC), path))
    return sorted(found)


class ScheduledBackups:
    def __init__(self, db: Database, settings: BackupSettings) -> None:
        assert settings.dir is not None
        self.db = db
        self.directory = Path(settings.dir)
        self.interval = timedelta(seconds=settings.interval)
        self.keep = settings.keep

    def seconds_until_due(self, now: datetime) -> float:
        existing = scheduled_files(self.directory) if self.directory.is_dir() else []
        if not existing:
            return 0.0
        return max(0.0, (existing[-1][0] + self.interval - now).total_seconds())

    def run_once(self, now: datetime | None = None) -> Path | None:
        """Take one backup and prune; a failure is logged, never raised. Returns the new file, if any."""
        at = now or datetime.now(UTC)
        path = self.directory / backup_name(self.db.dialect, at)
        try:
            manifest = create_backup(self.db, path, now=at)
        except Exception as exc:  # a backup must never stop the sync loop
            reason = redact_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            log.warning("scheduled backup to %s failed: %s", path, reason)
            return None
        head = manifest.audit_head.seq if manifest.audit_head else 0
        log.info("backup written: %s (%d bytes, audit log up to entry %d)", path, manifest.size, head)
        self.prune()
        return path

    def prune(self) -> list[Path]:
        existing = scheduled_files(self.directory)
        gone = [path for _at, path in existing[: max(0, len(existing) - self.keep)]]
        for path in gone:
            try:
                path.unlink(missing_ok=True)
                manifest_path(path).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot delete the old backup %s: %s", path, exc.strerror)
        return gone

    def run_until(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if stop.wait(self.seconds_until_due(datetime.now(UTC))):
                return
            if self.run_once() is None:
                stop.wait(min(RETRY_SECONDS, self.interval.total_seconds()))


@contextmanager
def scheduled_backups(db: Database, config: Config) -> Iterator[ScheduledBackups | None]:
    """Backups on a thread of their own for as long as the block (the sync loop) runs; nothing if not configured."""
    if config.backup.dir is None:
        yield None
        return
    backups = ScheduledBackups(db, config.backup)
    stop = threading.Event()
    thread = threading.Thread(target=backups.run_until, args=(stop,), name="scheduled-backups", daemon=True)
    thread.start()
    try:
        yield backups
    finally:
        stop.set()
        thread.join(timeout=STOP_WAIT_SECONDS)
