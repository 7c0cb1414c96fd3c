"""`inventory tokens create|list|revoke`: API tokens, the principals of the HTTP server."""

from __future__ import annotations

from typing import Any

import click

from inventory.cli.context import AppContext


@click.group("tokens")
def tokens_group() -> None:
    """API tokens: each names a principal with groups; stored only as a keyed hash. Only admins create or revoke."""


def _policy(app: AppContext) -> Any:
    """The database's applied policy: its principals and groups decide who is an admin, whatever the config says."""
    app.tell_if_draft()
    return app.applied_policies().current()


@tokens_group.command("create")
@click.argument("name")
@click.option("--group", "groups", multiple=True, help="A group the token's principal belongs to (repeatable).")
@click.option("--expires", help="Lifetime, e.g. 90d, 12h (default: never).")
@click.pass_obj
def create_command(app: AppContext, name: str, groups: tuple[str, ...], expires: str | None) -> None:
    """Create a token for principal NAME and print it once: the last line of stdout is the token alone.

    Only an admin may (principals.admins of the applied policy; default: the group admins)."""
    client = app.server_client()
    if client is not None:
        token = client.create_token(name, groups, expires)
    else:
        from inventory.tokens import create_under

        # A name that looks like one the policy gives (or another token's) is refused.
        token = create_under(app.database(), _policy(app), app.principal(), name, groups, expires)
    click.echo(f"token for {name} created; it is shown once, store it now:", err=True)
    click.echo(token)


@tokens_group.command("list")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml", "csv"]), default="table", show_default=True)
@click.pass_obj
def list_command(app: AppContext, output: str) -> None:
    """Tokens with their groups and state (never the token)."""
    from inventory.render import render_rows

    client = app.server_client()
    if client is not None:
        rows = client.tokens()
    else:
        from inventory.tokens import list_tokens

        rows = [info.as_row() for info in list_tokens(app.database())]
    render_rows(rows, output, ("name", "groups", "state", "created_at", "created_by", "expires_at", "revoked_at"))


@tokens_group.command("revoke")
@click.argument("name")
@click.pass_obj
def revoke_command(app: AppContext, name: str) -> None:
    """Revoke the live token of NAME: it authenticates no one from now on."""
    client = app.server_client()
    if client is not None:
        client.revoke_token(name)
    else:
        from inventory.tokens import revoke_under

        revoke_under(app.database(), _policy(app), app.principal(), name)
    click.echo(f"token {name} revoked")


COMMANDS = [tokens_group]
