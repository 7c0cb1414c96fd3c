"""`inventory db`: schema revisions through Alembic; backup and restore (inventory/backup/)."""

from __future__ import annotations

import click

from inventory.cli.context import AppContext


@click.group("db")
def db_group() -> None:
    """Database schema: upgrade, downgrade, show the current revision; backup and restore."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
@click.pass_obj
def upgrade_command(app: AppContext, revision: str) -> None:
    """Migrate the database to REVISION (default: the newest)."""
    from inventory.storage.migrate import upgrade

    db = app.database(check_schema=False)
    before = db.current_revision()
    signed = upgrade(db, revision)
    after = db.current_revision()
    for kind, count in signed.items():
        click.echo(f"signed {count} {kind} row(s) stored before rows carried a mac", err=True)
    click.echo(
        f"{db.display_url}: {before or 'empty'} -> {after}"
        if before != after
        else f"{db.display_url}: already at {after}"
    )


@db_group.command("downgrade")
@click.argument("revision")
@click.pass_obj
def downgrade_command(app: AppContext, revision: str) -> None:
    """Migrate the database back to REVISION ('base' removes every table)."""
    from inventory.storage.migrate import downgrade

    db = app.database(check_schema=False)
    downgrade(db, revision)
    click.echo(f"{db.display_url}: now at {db.current_revision() or 'base'}")


@db_group.command("current")
@click.pass_obj
def current_command(app: AppContext) -> None:
    """Print the database's schema revision and the one this program needs."""
    from inventory.storage.database import SCHEMA_REVISION

    db = app.database(check_schema=False)
    current = db.current_revision()
    state = "up to date" if current == SCHEMA_REVISION else "run `inventory db upgrade`"
    click.echo(f"{db.display_url}: {current or 'empty'} (this program needs {SCHEMA_REVISION}: {state})")


@db_group.command("grant")
@click.argument("role")
@click.option(
    "--apply", "apply_now", is_flag=True, help="Run the statements (as the owner that ran `db upgrade`), else print."
)
@click.pass_obj
def grant_command(app: AppContext, role: str, apply_now: bool) -> None:
    """Give the PostgreSQL runtime ROLE only what the service needs: SELECT/INSERT on the audit log, no ownership."""
    from sqlalchemy import text

    from inventory.errors import UsageError
    from inventory.storage.grants import runtime_grants

    statements = runtime_grants(role)
    if not apply_now:
        click.echo("".join(f"{statement};\n" for statement in statements), nl=False)
        return
    db = app.database()
    if db.dialect != "postgresql":
        raise UsageError(f"{db.display_url}: roles and grants are PostgreSQL's; SQLite has none")
    with db.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    click.echo(f"{db.display_url}: granted the runtime role {role} what the service needs")


@db_group.command("backup")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def backup_command(app: AppContext, file: str) -> None:
    """Back up the database to FILE while syncs go on (SQLite: FILE.gz compressed, else plain; PostgreSQL: pg_dump
    custom format), with FILE.manifest.json beside it: engine, schema revision, time and audit head, signed with the
    audit key. The audit key itself is not in the backup: keep a copy of it apart."""
    from inventory.backup.take import create_backup

    db = app.database(check_schema=False)
    manifest = create_backup(db, file)
    head = f"audit entry {manifest.audit_head.seq}" if manifest.audit_head else "no audit entries"
    click.echo(
        f"{db.display_url}: backed up to {file} ({manifest.size} bytes, {manifest.compression}, "
        f"revision {manifest.schema_revision}, {head}, taken at {manifest.taken_at})"
    )


@db_group.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--force", is_flag=True, help="Replace a database that holds anything (else a yes on a terminal).")
@click.pass_obj
def restore_command(app: AppContext, file: str, force: bool) -> None:
    """Restore the backup FILE into the configured database: checked first (its manifest signed with the audit key,
    a schema revision this program knows, its audit chain), migrated forward if older, and recorded in the audit log
    so that `audit verify` tells the restore from a truncation. Stop syncs and the server first."""
    import sys

    from inventory.backup.restore import restore_backup

    db = app.database(check_schema=False)
    confirm = (lambda question: click.confirm(question, default=False, err=True)) if sys.stdin.isatty() else None
    outcome = restore_backup(
        db,
        file,
        actor=app.os_user(),
        force=force,
        confirm=confirm,
        sources=[source.name for source in app.config.sources],
    )
    migrated = f", migrated from {outcome.migrated_from}" if outcome.migrated_from else ""
    click.echo(f"{db.display_url}: restored {file} (taken at {outcome.manifest.taken_at}{migrated})")
    click.echo(f"audit log: {outcome.note.describe()}")
    if db.dialect == "postgresql":
        click.echo("grants are not restored: run `inventory db grant ROLE --apply` for the service's runtime role")


@db_group.command("prune")
@click.option("--dry-run", is_flag=True, help="Count what would go, per table; delete nothing.")
@click.option(
    "--batch-size", type=click.IntRange(1, 20_000), help="Rows per transaction (default: retention.batch_size)."
)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
def prune_command(app: AppContext, dry_run: bool, batch_size: int | None, output: str) -> None:
    """Delete history older than the config's retention: removed objects, old changes, old sync runs.

    The sync loop does this every retention.interval; the audit log is never pruned (see `audit archive`).
    """
    from inventory.render import render_rows, to_json
    from inventory.retention import prune

    report = prune(app.database(), app.config.retention, dry_run=dry_run, batch_size=batch_size)
    if output == "json":
        click.echo(to_json(report.as_dict()))
        return
    verb = "would delete" if dry_run else "deleted"
    render_rows([{"table": table, verb: count} for table, count in report.rows.items()], "table", ("table", verb))
    click.echo(f"{verb} {report.total} rows in {report.batches} batches ({report.seconds:.1f}s)", err=True)


COMMANDS = [db_group]
