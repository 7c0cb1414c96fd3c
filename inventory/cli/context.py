"""What the `inventory` command and its subcommands share; the subcommands import it from here, not from the package."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OUTPUT_FORMATS = ("table", "wide", "json", "csv", "yaml")


@dataclass
class AppContext:
    """What every command shares, built lazily so that `--help` touches neither config nor database."""

    config_path: str | None
    database_url: str | None
    _config: Any = None
    _database: Any = None
    _registry: Any = None
    _applied: Any = None
    _draft_told: bool = False
    cleanups: list[Any] = field(default_factory=list)

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from inventory.connector import ConnectorRegistry

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
