"""Entry point: the click group, global options and the one error boundary.

Command modules define plain click commands; this module adds them to
:data:`cli`. :class:`_Group` is the single place that turns exceptions into exit
codes, so ``CliRunner`` tests and the real console script behave alike: errors
derived from :class:`reconciler.errors.InfinibayError` become one line on stderr
and exit 1; anything else is a bug and is shown as one line too. Tracebacks only
with ``-v``. Passwords in database URLs are redacted from every message.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import click

from reconciler import errors, settings
from reconciler.cli import converge, db, validate
from reconciler.cli import daemon as daemon_command
from reconciler.cli import inspect as inspect_commands

__all__ = ["cli", "main"]


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except errors.ManifestError as exc:
            for line in exc.messages:
                click.echo(settings.redact(line), err=True)
            click.echo(f"error: {exc}; nothing was applied", err=True)
            raise click.exceptions.Exit(1) from exc
        except Exception as exc:
            verbose = isinstance(ctx.obj, settings.Settings) and ctx.obj.verbose
            if verbose:
                click.echo(settings.redact(traceback.format_exc()), err=True)
            if isinstance(exc, errors.InfinibayError):
                message = str(exc)
            else:
                message = f"internal error: {exc or type(exc).__name__} (run with -v for details)"
            click.echo(f"error: {settings.redact(message)}", err=True)
            raise click.exceptions.Exit(1) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "database_url",
    envvar="INFINIBAY_DATABASE_URL",
    default=None,
    help="Record database URL (default: SQLite under $XDG_STATE_HOME).",
)
@click.option(
    "-c",
    "--connect",
    "libvirt_uri",
    envvar="INFINIBAY_LIBVIRT_URI",
    default=settings.DEFAULT_LIBVIRT_URI,
    show_default=True,
    help="libvirt connection URI.",
)
@click.option("-v", "--verbose", is_flag=True, help="Verbose logs; tracebacks on errors.")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--lock-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for the writer lock.",
)
@click.version_option(package_name="infinibay-reconciler")
@click.pass_context
def cli(
    ctx: click.Context,
    database_url: str | None,
    libvirt_uri: str,
    verbose: bool,
    log_format: str,
    lock_timeout: float,
) -> None:
    """Declarative reconciler for libvirt/KVM virtual machines."""
    ctx.obj = settings.Settings(
        database_url=database_url or settings.default_database_url(),
        libvirt_uri=libvirt_uri,
        verbose=verbose,
        log_format=log_format,
        lock_timeout=lock_timeout,
    )
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


cli.add_command(validate.validate)
for _command in (converge.plan, converge.diff, converge.apply, converge.delete):
    cli.add_command(_command)
cli.add_command(db.db)
cli.add_command(inspect_commands.get)
cli.add_command(inspect_commands.describe)
cli.add_command(inspect_commands.events)
cli.add_command(inspect_commands.history)
cli.add_command(daemon_command.daemon)


def main() -> None:
    cli.main(prog_name="infinibay")
