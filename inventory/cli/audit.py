"""`inventory audit list|show|verify|export|archive`: read the immutable audit log, prove it whole, archive it."""

from __future__ import annotations

import sys
from typing import Any

import click

from inventory.audit import AUDIT_EVENTS
from inventory.cli.context import AppContext
from inventory.errors import UsageError

LIST_COLUMNS = (
    "seq",
    "at",
    "actor",
    "event",
    "tool",
    "target_name",
    "tool_class",
    "decision",
    "outcome",
    "approver",
    "error",
)


def _filter(since: str | None, until: str | None, **filters: Any) -> Any:
    from inventory.audit.log import AuditFilter
    from inventory.timeutil import parse_period

    try:
        since_at, until_at = parse_period(since, until)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return AuditFilter(since=since_at, until=until_at, **filters)


@click.group("audit")
def audit_group() -> None:
    """Who did what: every tool call and sync, append-only and hash-chained."""


def _filter_options(func: Any) -> Any:
    options = [
        click.option("--actor", help="Only this actor."),
        click.option("--tool", help="Only this tool."),
        click.option(
            "--class",
            "tool_class",
            type=click.Choice(["READ_ONLY", "SAFE_MUTATE", "DESTRUCTIVE"], case_sensitive=False),
        ),
        click.option("--decision", type=click.Choice(["allow", "require_approval", "deny"])),
        click.option(
            "--outcome",
            help="success, failed, denied, pending, rejected, approved, expired, dry_run, invalid, partial, started.",
        ),
        click.option("--event", type=click.Choice(AUDIT_EVENTS)),
        click.option("--target", help="Target or target name contains this."),
        click.option("--since", help="From this long ago (7d, 1h) or ISO time."),
        click.option("--until", help="Up to this long ago or ISO time."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@audit_group.command("list")
@_filter_options
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="The newest this many.")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml", "csv"]), default="table", show_default=True)
@click.pass_obj
def list_command(
    app: AppContext, since: str | None, until: str | None, limit: int, output: str, **filters: Any
) -> None:
    """Audit entries, oldest first (the newest --limit of those that match)."""
    from inventory.render import render_rows

    flt = _filter(since, until, limit=limit, newest_first=True, **filters)
    client = app.server_client()
    if client is not None:
        wanted = {"class": filters.pop("tool_class"), "since": since, "until": until, **filters}
        rows = client.audit_entries(wanted, limit)
    else:
        from inventory.audit.log import list_entries

        with app.database().session() as session:
            rows = list_entries(session, flt)
    render_rows(rows, output, LIST_COLUMNS)


@audit_group.command("show")
@click.argument("seq", type=int)
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@click.pass_obj
def show_command(app: AppContext, seq: int, output: str) -> None:
    """One entry with every field and its hashes."""
    from inventory.render import render_document

    client = app.server_client()
    if client is not None:
        render_document(client.audit_entry(seq), output)
        return
    from inventory.audit.log import get_entry

    with app.database().session() as session:
        render_document(get_entry(session, seq), output)


@audit_group.command("verify")
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, exists=True),
    help="An earlier `audit export`: its last entry must still be there, unchanged.",
)
@click.option(
    "--in-python",
    is_flag=True,
    help="Re-hash every entry here instead of in the database (PostgreSQL walks it itself).",
)
@click.option(
    "--archive",
    "archives",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True),
    help="An `audit archive` file (repeat for each, any order): archives and database are checked as one chain.",
)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def verify_command(
    app: AppContext, checkpoint: str | None, in_python: bool, archives: tuple[str, ...], output: str
) -> None:
    """Walk the hash chain, check every entry's mac with the audit key and the head file; report the first entry
    changed, removed, out of order, forged or cut off, and exit 1 if any.

    After `audit archive` the database's part starts at its newest checkpoint; with --archive the archived
    entries are checked too, each file against the sha256 its checkpoint recorded."""
    from inventory.audit.log import read_checkpoint
    from inventory.render import to_json

    mark = read_checkpoint(checkpoint) if checkpoint else None
    client = app.server_client()
    if client is not None:
        if archives:
            raise UsageError(
                "--archive reads archive files with the audit key, which only the server's account holds: run "
                "`audit verify --archive` as that account, in direct mode (INVENTORY_SOCKET= or --socket '')"
            )
        report = client.audit_verify(mark, in_python=in_python)
    else:
        from inventory.audit.verify import verify_report

        report = verify_report(app.database(), mark, in_python=in_python, archives=archives)
    problem, restores = report["problem"], report["restores"]
    if output == "json":
        click.echo(to_json(report))
    elif report["ok"]:
        if archives:
            where = (
                f"{report['archived']} archived entries and {report['checked']} in the database, one chain from entry 1"
            )
        elif report["starts_after"]:
            where = (
                f"{report['checked']} entries, starting at the checkpoint after entry {report['starts_after']} "
                "(archived entries not checked: give --archive)"
            )
        else:
            where = f"{report['checked']} entries"
        click.echo(f"ok: {where}, chain intact up to entry {report['last_seq']} ({report['last_hash'][:16]})")
        for note in restores:
            click.echo(f"restore: {note}")
    else:
        if problem["kind"] != "applied_policy":  # the chain itself
            click.echo(f"FAILED after {report['checked']} good entries: {problem['message']}", err=True)
        # Every applied policy row that does not verify: refused where it would decide, reported here.
        for line in report.get("applied_policies") or []:
            click.echo(f"FAILED: {line}", err=True)
    if not report["ok"]:
        raise SystemExit(1)


@audit_group.command("export")
@_filter_options
@click.option("--after-seq", type=int, help="Only entries after this seq (incremental shipping).")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--file", "path", type=click.Path(dir_okay=False, writable=True), help="Write here instead of stdout.")
@click.pass_obj
def export_command(
    app: AppContext,
    since: str | None,
    until: str | None,
    after_seq: int | None,
    fmt: str,
    path: str | None,
    **filters: Any,
) -> None:
    """Entries as JSON lines with their hashes; keep the output off the box as a checkpoint."""
    from inventory.audit.log import export_jsonl

    flt = _filter(since, until, after_seq=after_seq, **filters)
    with app.database().session() as session:
        if path:
            with open(path, "w", encoding="utf-8") as out:
                count = export_jsonl(session, out, flt)
            click.echo(f"{count} entries written to {path}", err=True)
        else:
            export_jsonl(session, sys.stdout, flt)


@audit_group.command("archive")
@click.option("--before", required=True, help="Archive the entries older than this (ISO date or time, or 90d ago).")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False),
    help="The archive to write (never overwritten; default audit-<first>-<last>.jsonl here).",
)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def archive_command(app: AppContext, before: str, path: str | None, output: str) -> None:
    """Move old entries to an archive file (JSON lines with both hashes and the mac), leaving a keyed checkpoint.

    Run it as the database owner; keep the file: `audit verify --archive FILE` checks it and the
    database as one chain. The newest entry always stays in the database."""
    from inventory.audit.archive import archive
    from inventory.render import to_json
    from inventory.timeutil import parse_since

    try:
        cutoff = parse_since(before)
    except ValueError as exc:
        raise UsageError(f"--before: {exc}") from None
    result = archive(app.database(), cutoff, path, actor=app.os_user())
    if output == "json":
        click.echo(to_json(result.as_dict()))
    elif result.entries:
        click.echo(
            f"archived entries {result.first_seq}..{result.last_seq} ({result.entries}) to {result.path} "
            f"(sha256 {result.sha256}); {result.deleted} deleted from the database"
        )
    else:
        left = f" ({result.deleted} archived entries left by an earlier run deleted)" if result.deleted else ""
        click.echo(f"nothing to archive before {before}{left}")


COMMANDS = [audit_group]
