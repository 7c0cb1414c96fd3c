"""`inventory tokens create|list|revoke`: API tokens, the principals of the HTTP server."""

from __future__ import annotations

from typing import Any

import click

from inventory.cli.context import AppContext


@click.group("tokens")
def tokens_group() -> None:
    """API tokens: each names a principal with groups; stored only as a keyed hash. Only admins create or revoke."""


def _policy(app: AppContext) -> Any:
    from inventory.policy.rules import load_policy

    return load_policy(app.config.policy_path)


@tokens_group.command("create")
@click.argument("name")
@click.option("--group", "groups", multiple=True, help="A group the token's principal belongs to (repeatable).")
@click.option("--expires", help="Lifetime, e.g. 90d, 12h (default: never).")
@click.pass_obj
def create_command(app: AppContext, name: str, groups: tuple[str, ...], expires: str | None) -> None:
    """Create a token for principal NAME and print it once: the last line of stdout is the token alone.

    Only an admin may (principals.admins in the config; default: the group admins)."""
    from inventory.tokens import administrator, create_token, known_names, parse_expires

    expires_in = parse_expires(expires)
    client = app.server_client()
    if client is not None:
        token = client.create_token(name, groups, expires)
    else:
        policy = _policy(app)
        settings = app.config.principals
        # A name that looks like one the config or the policy gives (or another token's) is refused.
        token = create_token(
            app.database(),
            name,
            groups=groups,
            expires_in=expires_in,
            by=administrator(app.principal(), policy),
            admins=settings.admins,
            known_names=known_names(settings, policy),
        )
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
        from inventory.tokens import administrator, revoke_token

        by = administrator(app.principal(), _policy(app))
        revoke_token(app.database(), name, by=by, admins=app.config.principals.admins)
    click.echo(f"token {name} revoked")


COMMANDS = [tokens_group]
