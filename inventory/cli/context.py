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
    # --socket / INVENTORY_SOCKET as given: None when not given, "" for "no server: direct mode".
    socket_option: str | None = None
    _config: Any = None
    _database: Any = None
    _registry: Any = None
    _applied: Any = None
    _draft_told: bool = False
    cleanups: list[Any] = field(default_factory=list)

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from inventory.connector import installed_registry

            # Every command that works on sources, config or database starts here, its imports done.
            resume_gc()
            # The process's one registry: a sync's relink reads it too, and each discovery scans every installed
            # distribution's entry points (~10 ms).
            self._registry = installed_registry()
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
            if self.config.audit_key_file is not None:
                attach(self._database, AuditSecrets(self.config.audit_key_file, self.config.audit_head_file))
            else:  # the database's own key, named by its id once its schema is known (keys.secrets_for)
                self._database.audit_head_file = self.config.audit_head_file
            self.cleanups.append(self._database.dispose)
        if check_schema:
            self._database.ensure_schema(auto_migrate=migrate)
        return self._database

    def applied_policies(self) -> Any:
        """The database's applied policy (inventory/policy/applied.py): what decides, whatever the config names."""
        if self._applied is None:
            from inventory.policy.applied import AppliedPolicies

            self._applied = AppliedPolicies(self.database())
        return self._applied

    def os_user(self) -> str:
        """The OS user's name, for commands that record who ran them but decide nothing by policy (restore, archive):
        they may run before the database has a schema, so the applied policy is not read."""
        from inventory.principals import PrincipalSettings, cli_principal

        return cli_principal(PrincipalSettings()).name

    def principal(self, actor: str | None = None) -> Any:
        """Who runs this command: the OS user, acting for ``actor`` where the applied policy allows it."""
        from inventory.principals import cli_principal

        return cli_principal(self.applied_policies().current().principals, actor)

    def tell_if_draft(self) -> None:
        """One line on stderr when the config names a policy (or principals) other than the applied one."""
        if self._draft_told:
            return
        self._draft_told = True
        from inventory.policy.applied import draft_notice

        notice = draft_notice(self.config, self.applied_policies())
        if notice:
            import click

            click.echo(notice, err=True)

    def server_socket(self) -> Any:
        """The server's Unix socket (a Path), or None for direct mode: --socket / INVENTORY_SOCKET (empty: none),
        else the config's server.socket."""
        from pathlib import Path

        if self.socket_option is not None:
            return Path(self.socket_option).expanduser() if self.socket_option.strip() else None
        return self.config.server_socket

    def server_client(self) -> Any:
        """The client of the server when a socket is configured (the command acts through it, as the OS user);
        None in direct mode, once it is clear this account may hold the audit key (else ConfigError, exit 2)."""
        path = self.server_socket()
        if path is not None:
            from inventory.client import ServerClient

            client = ServerClient(path)
            self.cleanups.append(client.close)
            return client
        self.check_direct_mode()
        return None

    def check_direct_mode(self) -> None:
        """Direct mode (this process writes the database and holds the audit key) is for the key's owner: refuse
        another account's key, and a second key beside a database whose log a key already signs."""
        from inventory.audit.head import read_database_head
        from inventory.audit.keys import AuditSecrets, ownership_problem, secrets_for
        from inventory.errors import ConfigError

        def refuse_foreign(audit_secrets: Any) -> None:
            problem = ownership_problem(audit_secrets)
            if problem is not None:
                raise ConfigError(
                    f"direct mode needs an audit key of your own, and {problem}: {_USE_THE_SERVER}",
                    path=str(audit_secrets.key_file),
                    key="audit.key_file",
                )

        # The configured key before the database is even opened (it may be the service's, closed to this account),
        # then the one the database is given (named by its id when the config names none).
        if self.config.audit_key_file is not None:
            refuse_foreign(AuditSecrets(self.config.audit_key_file, self.config.audit_head_file))
        db = self.database()
        audit_secrets = secrets_for(db)
        refuse_foreign(audit_secrets)
        where = {"path": str(audit_secrets.key_file), "key": "audit.key_file"}
        if audit_secrets.key(create=False) is None:
            with db.session() as session:
                head = read_database_head(session)
            if head is not None and head.mac is not None:
                raise ConfigError(
                    f"there is no audit key here, and the database's audit log is signed with one (entry {head.seq}): "
                    f"a second key would sign entries no one can verify; {_USE_THE_SERVER}",
                    **where,
                )

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            cleanup()


_USE_THE_SERVER = (
    "go through the service that holds it (--socket PATH, INVENTORY_SOCKET or the config's server.socket), "
    "or run as the key's owner"
)


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
