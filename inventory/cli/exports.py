"""`inventory ansible --list|--host NAME` and `inventory export prometheus-sd`: thin over inventory.exports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from inventory.cli.context import AppContext
from inventory.errors import UsageError

_source_option = click.option("--source", "sources", multiple=True, help="Only hosts of this source (repeatable).")
_kind_option = click.option(
    "--kind", "kinds", multiple=True, help="Only hosts of this kind, e.g. vm, node (repeatable)."
)


def _write_json(document: Any, output: Path | None) -> None:
    from inventory.records import to_json_bytes

    data = to_json_bytes(document) + b"\n"
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    # Written beside the target and renamed over it: Prometheus re-reads file_sd files when they change
    # and must never see half of one.
    partial = output.with_name(output.name + ".tmp")
    try:
        partial.write_bytes(data)
        partial.replace(output)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None


@click.command("ansible")
@click.option("--list", "list_all", is_flag=True, help="Every group and host, with hostvars under _meta.")
@click.option("--host", "host", metavar="NAME", help="One host's variables, by its name in --list.")
@_source_option
@_kind_option
@click.pass_obj
def ansible_command(
    app: AppContext, list_all: bool, host: str | None, sources: tuple[str, ...], kinds: tuple[str, ...]
) -> None:
    """Ansible dynamic inventory (script protocol). Use it through a two-line wrapper, see the README."""
    from inventory.exports import ansible

    if list_all == (host is not None):
        raise UsageError("give exactly one of --list and --host NAME")
    with app.database().session() as session:
        if host is not None:
            document = ansible.host_vars(session, host, sources=sources, kinds=kinds)
        else:
            document = ansible.build_list(session, sources=sources, kinds=kinds)
    _write_json(document, None)


@click.group("export")
def export_group() -> None:
    """The inventory in formats other tools read."""


@export_group.command("prometheus-sd")
@click.option(
    "--port",
    type=int,
    default=9100,
    show_default=True,
    help="Port of the exporter on every host (node_exporter: 9100).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (atomically) instead of stdout.",
)
@_source_option
@_kind_option
@click.pass_obj
def prometheus_sd_command(
    app: AppContext, port: int, output: Path | None, sources: tuple[str, ...], kinds: tuple[str, ...]
) -> None:
    """Prometheus file_sd targets: one group per host address, labelled with source, kind, status and labels."""
    from inventory.exports.prometheus import target_groups

    with app.database().session() as session:
        groups = target_groups(session, port=port, sources=sources, kinds=kinds)
    _write_json(groups, output)


COMMANDS = [ansible_command, export_group]
