"""``infinibay db upgrade`` / ``db current``: the record's schema migrations.

Opening the record upgrades it anyway; ``db upgrade`` does it explicitly (before a
deployment, or to see that it works), ``db current`` reports without changing
anything. Both read the database URL from the global ``--db`` option.
"""

from __future__ import annotations

import click

from reconciler import settings, store

__all__ = ["db"]


@click.group()
def db() -> None:
    """Create, upgrade or inspect the record's database schema."""


@db.command()
@click.pass_obj
def upgrade(obj: settings.Settings) -> None:
    """Create the schema or upgrade it to the newest revision."""
    state = store.upgrade_schema(obj.database_url)
    click.echo(f"{settings.redact(obj.database_url)}: schema at revision {state.current} (head)")


@db.command()
@click.pass_obj
def current(obj: settings.Settings) -> None:
    """Show the schema revision of the record and whether it is the newest."""
    state = store.schema_state(obj.database_url)
    where = settings.redact(obj.database_url)
    if state.up_to_date:
        click.echo(f"{where}: schema at revision {state.current} (head)")
        return
    at = "empty, no schema yet" if state.current is None else f"schema at revision {state.current}"
    click.echo(f"{where}: {at} (head is {state.head}; run infinibay db upgrade)")
