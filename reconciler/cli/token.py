"""``infinibay token create|list|revoke``: the API tokens of the daemon's HTTP endpoints.

``create`` prints the secret once, on stdout and alone on its line, so that
``TOKEN=$(infinibay token create ...)`` captures it; the record keeps only its
SHA-256 (:mod:`reconciler.models.access`). Nothing else ever shows a secret:
``list`` shows name, role, owner, when it was created, when it expires and
when it was last used. A revoked token is refused by a running daemon at
once (each request looks its hash up), and a ``user`` token reads only the
VMs labelled ``infinibay.io/owner: OWNER``.
"""

from __future__ import annotations

import datetime as dt

import click

from reconciler import errors
from reconciler.cli import common, output
from reconciler.models import access, documents, record

__all__ = ["token"]

_HEADERS = ("NAME", "ROLE", "OWNER", "CREATED", "EXPIRES", "LAST USED")


@click.group()
def token() -> None:
    """Create, list and revoke API tokens (roles admin, viewer, user)."""


@token.command()
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice([r.value for r in access.Role]),
    required=True,
    help="admin: everything; viewer: reads everything; user: only the VMs of --owner.",
)
@click.option("--owner", default=None, help="Whose VMs a user token sees (infinibay.io/owner).")
@click.option(
    "--ttl",
    "--expires",
    "ttl",
    default=None,
    metavar="DURATION",
    help="Lifetime, e.g. 30d or 12h (default: never expires).",
)
@click.pass_context
def create(ctx: click.Context, name: str, role: str, owner: str | None, ttl: str | None) -> None:
    """Create a token and print it, once: it cannot be shown again."""
    if not access.valid_token_name(name):
        raise click.BadParameter(
            "use letters, digits and . _ @ - (at most 128), starting with a letter or digit",
            param_hint="NAME",
        )
    if role == access.Role.USER and not owner:
        raise click.BadParameter("a user token needs --owner", param_hint="--owner")
    if role != access.Role.USER and owner:
        raise click.BadParameter("only a user token has an owner", param_hint="--owner")
    now = dt.datetime.now(dt.UTC)
    try:
        expires = access.expiry(ttl, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ttl") from exc
    secret = access.new_secret()
    with common.open_store(ctx) as store:
        store.create_token(name, access.hash_secret(secret), role, owner, expires)
    click.echo(secret)
    until = documents.timestamp(expires) if expires is not None else "never"
    click.echo(f"token {name} ({role}) created; expires {until}; it is shown only now", err=True)


def _when(value: dt.datetime | None, now: dt.datetime, *, ago: bool) -> str:
    if value is None:
        return "never" if not ago else "-"
    if ago:
        return f"{output.age(value, now)} ago"
    return documents.timestamp(value) + (" (expired)" if value <= now else "")


def _json(item: record.TokenRecord) -> dict[str, object]:
    def stamp(value: dt.datetime | None) -> str | None:
        return documents.timestamp(value) if value is not None else None

    return {
        "name": item.name,
        "role": item.role,
        "owner": item.owner,
        "created": stamp(item.created_at),
        "expires": stamp(item.expires_at),
        "lastUsed": stamp(item.last_used_at),
    }


@token.command(name="list")
@click.option(
    "-o", "--output", "output_format", type=click.Choice(["table", "json"]), default="table"
)
@click.pass_context
def list_tokens(ctx: click.Context, output_format: str) -> None:
    """List tokens: name, role, owner, created, expires, last used (never the secret)."""
    with common.open_store(ctx, read_only=True) as store:
        items = store.tokens()
    if output_format == "json":
        click.echo(output.to_json({"items": [_json(item) for item in items]}))
        return
    now = dt.datetime.now(dt.UTC)
    rows = [
        [
            item.name,
            item.role,
            item.owner or "-",
            _when(item.created_at, now, ago=True),
            _when(item.expires_at, now, ago=False),
            _when(item.last_used_at, now, ago=True),
        ]
        for item in items
    ]
    if rows:
        click.echo(output.table(_HEADERS, rows))
    else:
        click.echo("no tokens", err=True)


@token.command()
@click.argument("name")
@click.pass_context
def revoke(ctx: click.Context, name: str) -> None:
    """Revoke a token: a daemon refuses it from its next request on."""
    with common.open_store(ctx) as store:
        if not store.revoke_token(name):
            raise errors.NotFound(f"there is no token named {name}")
    click.echo(f"token {name} revoked")
