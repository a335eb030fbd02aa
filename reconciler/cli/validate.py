"""``infinibay validate``: load and validate manifests, touch nothing."""

from __future__ import annotations

import click

from reconciler.cli import options
from reconciler.manifests import loader

__all__ = ["validate"]


@click.command()
@options.manifest_files
def validate(paths: tuple[str, ...]) -> None:
    """Load and validate manifests; exit 0 when valid, 1 when not."""
    desired = loader.load(list(paths))
    click.echo(
        f"{len(desired)} manifests valid: {len(desired.pools)} pools, "
        f"{len(desired.networks)} networks, {len(desired.templates)} templates, "
        f"{len(desired.vms)} virtual machines"
    )
