"""Options shared by several commands (kept free of heavy imports: ``validate`` uses it)."""

from __future__ import annotations

import click

__all__ = ["manifest_files"]

manifest_files = click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    required=True,
    type=click.Path(),
    help="File, directory (recursive) or - for stdin. Repeatable.",
)
