"""What the `inventory` command and its subcommands share; the subcommands import it from here, not from the package."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any

OUTPUT_FORMATS = ("table", "wide", "json", "csv", "yaml")

# Cyclic GC is off while a command starts (set by inventory.cli.main): see pause_gc_while_starting.
_gc_paused = False


def pause_gc_while_starting() -> None:
    """Turn cyclic GC off for a command's start: its imports make a few hundred thousand objects that live as long
    as the process (modules, classes, tables, mappers, pydantic validators), and every collection on the way
    scans them again to free nothing (~20 ms of a one-shot sync's ~0.35 s of CPU). ``resume_gc`` turns it back on."""
    global _gc_paused
    if gc.isenabled():
        gc.disable()
        _gc_paused = True


def resume_gc() -> None:
    """GC back on (if it was paused) once a command's imports are done and its work begins: the objects made so
    far are frozen first, so that no later collection scans them. Work of any size (a loop, a server, a sync
    of a large source) runs with the collector on."""
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        gc.freeze()
        gc.enable()


@dataclass
class AppContext:
    """What every command shares, built lazily so that `--help` touches neither config nor database."""

    config_path: str | None
    database_url: str | None
    _config: Any = None
    _database: Any = None
    _registry: Any = None
    cleanups: list[Any] = field(default_factory=list)

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from inventory.connector import ConnectorRegistry

            # Every command that works on sources, config or database starts here, its imports done.
            resume_gc()
            self._registry = ConnectorRegistry.discover()
        return self._registry

    @property
    def config(self) -> Any:
        if self._config is None:
            from inventory.config import load_config

            self._config = load_config(self.config_path, registry=self.registry, database_url=self.database_url)
        return self._config

    def database(self, *, migrate: bool | None = None, check_schema: bool = True) -> Any:
        if self._database is None:
            from inventory.audit.keys import AuditSecrets, attach
            from inventory.storage.database import Database

            self._database = Database(self.config.database_url)
            attach(self._database, AuditSecrets(self.config.audit_key_file, self.config.audit_head_file))
            self.cleanups.append(self._database.dispose)
        if check_schema:
            self._database.ensure_schema(auto_migrate=migrate)
        return self._database

    def principal(self, actor: str | None = None) -> Any:
        """Who runs this command: the OS user, acting for ``actor`` where the config allows it."""
        from inventory.principals import cli_principal

        return cli_principal(self.config.principals, actor)

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            cleanup()


def invoked_as() -> str:
    """The command as the user typed it, for the hints we print: `.venv/bin/inventory` stays that, a command found
    on PATH is `inventory`, `python -m inventory` is that."""
    import os
    import shutil
    import sys

    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "inventory"
    if os.path.basename(argv0) == "__main__.py":
        return "python -m inventory"
    if os.sep not in argv0:
        return argv0 if shutil.which(argv0) else "inventory"
    path = os.path.abspath(argv0)
    if shutil.which(os.path.basename(argv0)) == path:
        return os.path.basename(argv0)  # the same program is on PATH: its bare name works
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path
