"""``infinibay validate``: load and validate manifests, touch nothing.

References (a VM's template, pool, network) are satisfied by the manifests and,
when there is one, by the record, as ``plan`` satisfies them: a VM whose
template was applied before validates on its own. Without a record only the
manifests are used; a record that cannot be read is said so on stderr. The
record is opened read-only and only when it exists: validate creates nothing.
"""

from __future__ import annotations

import click

from reconciler import errors, settings
from reconciler.cli import options
from reconciler.manifests import loader
from reconciler.models import desired as desired_module
from reconciler.models import record

__all__ = ["validate"]


def _records(ctx: click.Context) -> list[record.ResourceRecord] | None:
    """The record's resources; None when there is none, or (with a note) when it is unreadable."""
    from reconciler.store import store as store_module  # only here: validate starts fast

    config = ctx.find_root().obj
    assert isinstance(config, settings.Settings)
    try:
        url = config.database_url
        if store_module.missing_record(url) is not None:
            return None
        with store_module.Store.open(url, lock_timeout=config.lock_timeout) as store:
            return store.resources()
    except errors.InfinibayError as exc:
        click.echo(
            f"note: the record was not read ({settings.redact(str(exc))}); "
            "references checked against the manifests only",
            err=True,
        )
        return None


@click.command()
@options.manifest_files
@click.pass_context
def validate(ctx: click.Context, paths: tuple[str, ...]) -> None:
    """Load and validate manifests, with the record's resources; exit 0 when valid, 1 when not."""
    records = _records(ctx)
    desired: desired_module.DesiredState
    if records is None:
        desired = loader.load(list(paths))
    else:
        desired = loader.load_against(list(paths), records)
    for notice in desired.notices:
        click.echo(f"note: {notice}", err=True)
    click.echo(
        f"{len(desired)} manifests valid: {len(desired.pools)} pools, "
        f"{len(desired.networks)} networks, {len(desired.templates)} templates, "
        f"{len(desired.vms)} virtual machines"
    )
