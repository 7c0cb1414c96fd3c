"""`inventory version|completion|init|check`: getting started, and staying sure the config still works."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from inventory import __version__
from inventory.cli.context import AppContext, invoked_as
from inventory.errors import UsageError

COMPLETION_SHELLS = ("bash", "zsh", "fish")


def complete_source_names(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of `-s/--source`: the source names of the config the command line names (or finds)."""
    from click.shell_completion import CompletionItem

    root = ctx.find_root()
    try:
        from inventory.config import load_config

        config = load_config(root.params.get("config_path"), database_url=root.params.get("database_url"))
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    return [CompletionItem(s.name, help=s.type) for s in config.sources if s.name.startswith(incomplete)]


# `-s/--source NAME` of sync and check: repeatable, completing the config's source names.
source_names_option = click.option(
    "-s",
    "--source",
    "sources",
    multiple=True,
    metavar="NAME",
    shell_complete=complete_source_names,
    help="Only these sources (repeatable).",
)


@click.command("version")
def version_command() -> None:
    """Print the version (also: inventory -V)."""
    click.echo(f"inventory {__version__}")


@click.command("completion")
@click.argument("shell", type=click.Choice(COMPLETION_SHELLS))
@click.pass_context
def completion_command(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script: eval "$(inventory completion bash)"."""
    from click.shell_completion import get_completion_class

    completion_class = get_completion_class(shell)
    if completion_class is None:  # pragma: no cover - the three shells are built into click
        raise UsageError(f"no completion for {shell}")
    root = ctx.find_root()
    complete_var = "_INVENTORY_COMPLETE"
    click.echo(completion_class(root.command, {}, "inventory", complete_var).source())


@click.command("init")
@click.option(
    "--path",
    "target",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write (default: --config, else ./inventory.yaml).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file without asking.")
@click.pass_obj
def init_command(app: AppContext, target: Path | None, force: bool) -> None:
    """Write a starter config from what this machine has: kubeconfig contexts, a local Docker socket."""
    from inventory.setup import discover_sources, starter_config

    path = target or Path(app.config_path or "inventory.yaml")
    here = f"{invoked_as()} -c {path}"
    found = discover_sources(app.registry)
    text = starter_config(found)
    if path.exists():
        if path.read_text(encoding="utf-8", errors="replace") == text:
            click.echo(f"{path} is already up to date")
            return
        if not force:
            if not sys.stdin.isatty():
                raise UsageError(f"{path} exists: pass --force to overwrite it")
            if not click.confirm(f"{path} exists. Overwrite it?", default=False, err=True):
                click.echo(f"kept {path}", err=True)
                return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    if not found:
        click.echo(f"wrote {path}: no source found on this machine (no kubeconfig context, no local Docker engine)")
        click.echo(f"next: edit {path}: replace `sources: []` with one of its commented examples, then {here} check")
        return
    click.echo(f"wrote {path} with {len(found)} source(s): {', '.join(s.name for s in found)}")
    click.echo(f"next: {here} check, then {here} sync --once")


@click.command("check")
@source_names_option
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
def check_command(app: AppContext, sources: tuple[str, ...], output: str) -> None:
    """Validate the config and reach each source read-only; writes nothing. Exit 0 ok, 1 a source failed, 2 config."""
    from inventory.check import check_sources
    from inventory.render import render_rows, to_json

    config = app.config
    if not config.sources:
        raise UsageError(f"no sources configured {where_configured(config)}")
    from inventory.storage.database import describe_url

    results = check_sources(config, app.registry, names=sources)
    rows = [r.as_row() for r in results]
    if output == "json":
        where = {"config": str(config.path) if config.path else None, "database": describe_url(config.database_url)}
        click.echo(to_json({**where, "sources": rows}))
    else:
        click.echo(f"config: {config.path or 'none (defaults)'}")
        render_rows(rows, "table", ("source", "type", "status", "objects", "time", "detail"))
        # A terminal cuts the table to its width: each problem in full, naming the call and the limit it hit.
        for result in results:
            if not result.ok:
                click.echo(f"{result.status.upper()} source {result.source!r}: {result.detail}", err=True)
    if any(not r.ok for r in results):
        raise SystemExit(1)


def where_configured(config: Any) -> str:
    return f"in {config.path}" if config.path else "(no config file found: run `inventory init` to write one)"


COMMANDS = [version_command, completion_command, init_command, check_command]
