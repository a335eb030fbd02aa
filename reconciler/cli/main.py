"""Entry point: the click group, global options and the one error boundary.

Command modules define plain click commands; :data:`cli` names them in
:data:`_COMMANDS` and imports a command's module only when that command runs (or
``--help`` lists it): ``infinibay plan`` never pays for the daemon's HTTP and
metrics stack or the table renderer, which keeps start-up short.
:class:`_Group` is the single place that turns exceptions into exit codes, so
``CliRunner`` tests and the real console script behave alike: errors derived
from :class:`reconciler.errors.InfinibayError` become one line on stderr and exit
1; anything else is a bug and is shown as one line too. Tracebacks only
with ``-v``. Passwords in database URLs are redacted from every message.
"""

from __future__ import annotations

import gc
import importlib
import logging
import traceback
from typing import Any

import click

from reconciler import errors, settings

__all__ = ["EXIT_CHANGES", "EXIT_ERROR", "EXIT_INTERRUPTED", "cli", "main"]

EXIT_ERROR = 1
"""Any error, a usage error included (click's own message, then exit 1)."""
EXIT_CHANGES = 2
"""Only ``plan`` (and ``diff``): the plan has changes."""
EXIT_INTERRUPTED = 130
"""Ctrl-C: what was in flight finished and was recorded, the rest did not start."""

_EPILOG = """\b
Exit codes:
  0    success (plan: no changes)
  1    error, usage errors included
  2    plan: the plan has changes (no other command exits 2)
  130  interrupted (Ctrl-C); actions that finished are recorded
"""

# Command name -> (module, attribute) of its click command.
_COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("reconciler.cli.validate", "validate"),
    "plan": ("reconciler.cli.converge", "plan"),
    "diff": ("reconciler.cli.converge", "diff"),
    "apply": ("reconciler.cli.converge", "apply"),
    "delete": ("reconciler.cli.converge", "delete"),
    "db": ("reconciler.cli.db", "db"),
    "get": ("reconciler.cli.inspect", "get"),
    "describe": ("reconciler.cli.inspect", "describe"),
    "events": ("reconciler.cli.inspect", "events"),
    "history": ("reconciler.cli.inspect", "history"),
    "daemon": ("reconciler.cli.daemon", "daemon"),
    "console": ("reconciler.cli.console", "console"),
    "explain": ("reconciler.cli.explain", "explain"),
    "export": ("reconciler.cli.export", "export"),
    "start": ("reconciler.cli.power", "start"),
    "stop": ("reconciler.cli.power", "stop"),
    "restart": ("reconciler.cli.power", "restart"),
    "suspend": ("reconciler.cli.suspend", "suspend"),
    "resume": ("reconciler.cli.suspend", "resume"),
    "token": ("reconciler.cli.token", "token"),
}


# The group's options that are also accepted after the subcommand (kubectl-style):
# those taking a value, and flags.
_GLOBAL_VALUED = ("--db", "-c", "--connect", "--log-format", "--lock-timeout")
_GLOBAL_FLAGS = ("-v", "--verbose")


def hoist_globals(args: list[str], commands: set[str]) -> list[str]:
    """``get vm --db URL -v`` -> ``--db URL -v get vm``: global options moved before the command.

    Only options exactly spelled as the group's are moved, never past ``--``,
    and never a value of another option; a subcommand has no option of these names.
    """
    head: list[str] = []
    index = 0
    while index < len(args):  # the group's own options, up to the subcommand
        word = args[index]
        if word in commands or not word.startswith("-") or word == "--":
            break
        head.append(word)
        index += 1
        if word in _GLOBAL_VALUED and index < len(args):
            head.append(args[index])
            index += 1
    rest = args[index:]
    moved: list[str] = []
    kept: list[str] = []
    position = 0
    while position < len(rest):
        word = rest[position]
        if word == "--":
            kept += rest[position:]
            break
        if word in _GLOBAL_FLAGS:
            moved.append(word)
        elif word in _GLOBAL_VALUED and position + 1 < len(rest):
            moved += [word, rest[position + 1]]
            position += 1
        elif word.partition("=")[0] in _GLOBAL_VALUED and word.startswith("--"):
            moved.append(word)
        else:
            kept.append(word)
        position += 1
    return [*head, *moved, *kept]


class _Group(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:  # completion sees the words as typed
            args = hoist_globals(args, set(self.list_commands(ctx)))
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            module, attribute = _COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return self.commands.get(cmd_name)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            exc.exit_code = EXIT_ERROR  # type: ignore[misc]  # per instance, not click-wide
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            exc.exit_code = EXIT_ERROR  # type: ignore[misc]  # 2 means only "plan has changes"
            raise
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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=_EPILOG)
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
    for handler in logging.getLogger().handlers:
        handler.addFilter(_redact_record)


def _redact_record(rec: logging.LogRecord) -> bool:
    """Replace the record's message by its redacted text (see :func:`settings.redact`)."""
    rec.msg = settings.redact(rec.getMessage())
    rec.args = None
    if rec.exc_info and not rec.exc_text:
        rec.exc_text = settings.redact(logging.Formatter().formatException(rec.exc_info))
    return True


def main() -> None:
    # A command builds many long-lived objects (modules, manifests, the observed
    # world) and little cyclic garbage; at the default thresholds the cycle
    # collector ran ~375 times in a plan of 1,000 VMs (0.1 s). Run it less often.
    gc.set_threshold(10_000, 50, 100)
    cli.main(prog_name="infinibay")
