"""The `inventory` command: thin over the library, errors turned into exit codes only here.

Exit codes: 0 ok; 1 a source failed or was locked by another process (or any
other runtime failure, e.g. the database is unreachable); 2 a usage or config
error (also: the configured server socket does not answer, direct mode was
refused the audit key); 3 the policy denied a tool call or an approval, or the terminal
confirmation of a call was refused (``PolicyDenied``); 4 ``inventory tool run``
made a call that waits for approval (its approval id is printed).
"""

from __future__ import annotations

import gc
import logging
import sys
from typing import Any

import click

from inventory import __version__
from inventory.cli.context import AppContext, pause_gc_while_starting
from inventory.errors import InventoryError
from inventory.redact import RedactingFilter, redact_text


class CommandError(click.ClickException):
    """An InventoryError on its way out, with the exit code its class documents."""

    def __init__(self, message: str, exit_code: int) -> None:
        from inventory.render import printable

        # Each line as a terminal may show it: a name in a message cannot recolour or retitle the terminal.
        super().__init__("\n".join(printable(line) for line in redact_text(message).split("\n")))
        # click declares exit_code on the class; each instance carries the code of its error class.
        self.exit_code = exit_code  # type: ignore[misc]


# Each command's module, imported only when that command runs (or help lists them all): a one-shot command
# does not pay for importing every other one. tests/test_cli_lazy.py holds this map to what the modules define.
LAZY_COMMANDS: dict[str, str] = {
    "sync": "inventory.cli.sync",
    "status": "inventory.cli.status",
    "report": "inventory.cli.report",
    "demo": "inventory.cli.demo",
    "db": "inventory.cli.db",
    **dict.fromkeys(
        ("hosts", "workloads", "services", "changes", "sources", "connectors", "get", "describe"), "inventory.cli.query"
    ),
    **dict.fromkeys(("version", "completion", "init", "check"), "inventory.cli.setup"),
    **dict.fromkeys(("tools", "policy", "tool", "approvals"), "inventory.cli.policy"),
    "audit": "inventory.cli.audit",
    "tokens": "inventory.cli.tokens",
    **dict.fromkeys(("ansible", "export"), "inventory.cli.exports"),
    "impact": "inventory.cli.impact",
    **dict.fromkeys(("serve", "mcp"), "inventory.cli.serve"),
}


def module_commands(module_name: str) -> list[click.Command]:
    """The top-level click commands a command module declares in its ``COMMANDS``."""
    import importlib

    return list(importlib.import_module(module_name).COMMANDS)


class InventoryGroup(click.Group):
    """The top-level group: its own options are accepted after the subcommand too (`hosts list -c FILE`); its
    commands are imported when first asked for (``LAZY_COMMANDS``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            for command in module_commands(LAZY_COMMANDS[cmd_name]):
                if command.name is not None:
                    self.commands.setdefault(command.name, command)
        return self.commands.get(cmd_name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = hoist_options(self, args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InventoryError as exc:
            raise CommandError(str(exc), exc.exit_code) from exc
        except Exception as exc:
            # SQLAlchemy is imported only by commands that use the database; an error of its
            # kind can only exist once it is loaded.
            sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
            if sqlalchemy_exc is None or not isinstance(exc, sqlalchemy_exc.SQLAlchemyError):
                raise
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise CommandError(f"database error: {reason[0] if reason else type(exc).__name__}", 1) from exc


def hoist_options(group: click.Command, args: list[str]) -> list[str]:
    """Move the group's options found after the subcommand name in front of it, values included.

    Everything after ``--`` stays where it is. The subcommands define none of these option names,
    so moving them cannot steal an option of theirs.
    """
    takes_value: dict[str, bool] = {}
    for param in group.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                takes_value[name] = not (param.is_flag or param.count)
    front: list[str] = []
    rest: list[str] = []
    seen_command = False
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg[:2]
        if not arg.startswith("-") or name not in takes_value:
            seen_command = seen_command or not arg.startswith("-")
            rest.append(arg)
        elif not seen_command:
            rest.append(arg)
            if takes_value[name] and arg == name and index + 1 < len(args):
                index += 1
                rest.append(args[index])
        else:
            front.append(arg)
            # `-c FILE` / `--config FILE` carry their value in the next word; `-cFILE`, `--config=FILE` in this one.
            if takes_value[name] and arg == name and index + 1 < len(args):
                index += 1
                front.append(args[index])
        index += 1
    return front + rest


def _configure_logging(verbose: int, log_format: str) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from inventory.logs import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    handler._inventory = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    # Replace only our own handler, so that embedding programs (and pytest) keep theirs.
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "_inventory", False)] + [handler]
    root.setLevel(level)
    # urllib3's "Retrying (Retry(total=...))" lines repeat what the source's own error says: shown with -v only.
    logging.getLogger("urllib3").setLevel(logging.ERROR if verbose == 0 else logging.NOTSET)


@click.group(
    cls=InventoryGroup, context_settings={"auto_envvar_prefix": "INVENTORY", "help_option_names": ["-h", "--help"]}
)
@click.option(
    "-c",
    "--config",
    "config_path",
    envvar="INVENTORY_CONFIG",
    type=click.Path(dir_okay=False),
    help="Config file (else ./inventory.yaml, then the user config dir). Env: INVENTORY_CONFIG.",
)
@click.option("--database-url", help="Database URL; overrides the config. Env: INVENTORY_DATABASE_URL.")
@click.option(
    "--socket",
    "socket_path",
    envvar="INVENTORY_SOCKET",
    help="The server's Unix socket: `serve` listens on it; tool, approvals, tokens and audit commands go through it "
    "as your OS user (else the config's server.socket; an empty value: direct mode). Env: INVENTORY_SOCKET.",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log line format on stderr.",
)
@click.version_option(__version__, "-V", "--version", prog_name="inventory", message="%(prog)s %(version)s")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: str | None,
    database_url: str | None,
    socket_path: str | None,
    verbose: int,
    log_format: str,
) -> None:
    """Infrastructure inventory: sync Kubernetes, Proxmox VE, Docker and hand-declared machines into one database."""
    _configure_logging(verbose, log_format)
    app = AppContext(config_path=config_path, database_url=database_url, socket_option=socket_path)
    ctx.obj = app
    ctx.call_on_close(app.close)


def main() -> None:
    # Starting a command creates a few hundred thousand objects that live as long as the process (modules,
    # classes, tables, models); collections in the middle of importing them scan them for nothing. GC is off
    # until the command's work begins (inventory.cli.context.resume_gc), and then full collections wait for
    # 100 passes of the middle generation instead of 10.
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)
    pause_gc_while_starting()
    try:
        cli.main(prog_name="inventory")
    finally:
        # The interpreter's exit collects garbage over every object the imports made (~0.1 s of CPU for a
        # one-shot command); frozen objects are skipped. Only the process's exit follows: atexit hooks still run.
        gc.freeze()
