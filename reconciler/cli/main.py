"""Entry point: the click group, global options and the one error boundary.

Command modules define plain click commands; :data:`cli` names them in
:data:`_COMMANDS` and imports a command's module only when that command runs
(``--help`` lists them from their summaries there): ``infinibay plan`` never pays
for the daemon's HTTP and metrics stack or the table renderer, and ``--help``
for none of the commands, which keeps start-up short.
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
from typing import Any, NamedTuple

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


class _Entry(NamedTuple):
    module: str
    attribute: str  # the click command in ``module``
    summary: str  # the first paragraph of its help, for the group's --help


# The summaries let ``infinibay --help`` list the commands without importing any:
# loading each to read its help imported every command module, and with them the
# store, the hypervisor adapter and the daemon's stack. tests/unit/test_cli_help.py
# holds each summary to its command's own help.
_COMMANDS: dict[str, _Entry] = {
    "validate": _Entry(
        "reconciler.cli.validate",
        "validate",
        "Load and validate manifests, with the record's resources; exit 0 when valid, 1 when not.",
    ),
    "plan": _Entry(
        "reconciler.cli.converge",
        "plan",
        "Show what apply would change and what each change costs; exit 2 on changes.",
    ),
    "diff": _Entry(
        "reconciler.cli.converge",
        "diff",
        "Show what apply would change and what each change costs; exit 2 on changes.",
    ),
    "apply": _Entry(
        "reconciler.cli.converge",
        "apply",
        "Converge libvirt and the record on the manifests; exit 0 only when converged.",
    ),
    "delete": _Entry(
        "reconciler.cli.converge",
        "delete",
        "Delete resources this installation owns, honouring reclaim policies and protection.",
    ),
    "db": _Entry(
        "reconciler.cli.db",
        "db",
        "Create, upgrade or inspect the record's database schema.",
    ),
    "get": _Entry(
        "reconciler.cli.inspect",
        "get",
        "List resources of KIND (or show NAME) with live status from libvirt.",
    ),
    "describe": _Entry(
        "reconciler.cli.inspect",
        "describe",
        "Show one resource: spec, status, conditions and recent events.",
    ),
    "events": _Entry(
        "reconciler.cli.inspect",
        "events",
        "The event log, oldest first, of every resource or of KIND/NAME.",
    ),
    "history": _Entry(
        "reconciler.cli.inspect",
        "history",
        "Every applied revision of KIND/NAME with what changed from the one before.",
    ),
    "daemon": _Entry(
        "reconciler.cli.daemon",
        "daemon",
        "Follow a directory or git branch; converge on every change, heal drift.",
    ),
    "console": _Entry(
        "reconciler.cli.console",
        "console",
        "Print the graphics URI of a running VM with its password, or write a .vv file.",
    ),
    "explain": _Entry(
        "reconciler.cli.explain",
        "explain",
        "Show the fields of a kind or of one field, e.g. firewallpolicy.spec.rules.",
    ),
    "export": _Entry(
        "reconciler.cli.export",
        "export",
        "Write manifests for the libvirt objects that exist now (domains, networks, pools).",
    ),
    "start": _Entry(
        "reconciler.cli.power",
        "start",
        "Start (or resume) VMs now; exit 0 when all run, 1 otherwise.",
    ),
    "stop": _Entry(
        "reconciler.cli.power",
        "stop",
        "Shut VMs down now (ACPI; --force: off at once); exit 0 when all stopped, 1 otherwise.",
    ),
    "restart": _Entry(
        "reconciler.cli.power",
        "restart",
        "Restart VMs now, booting their current configuration (clears RestartRequired).",
    ),
    "suspend": _Entry(
        "reconciler.cli.suspend",
        "suspend",
        "Suspend reconciliation of resources: plan, apply and the daemon leave them alone.",
    ),
    "resume": _Entry(
        "reconciler.cli.suspend",
        "resume",
        "Resume reconciliation of suspended resources. Exit 0, or 1 when one is not in the record.",
    ),
    "token": _Entry(
        "reconciler.cli.token",
        "token",
        "Create, list and revoke API tokens (roles admin, viewer, user).",
    ),
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
            entry = _COMMANDS[cmd_name]
            module = importlib.import_module(entry.module)
            self.add_command(getattr(module, entry.attribute), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own listing, with a stand-in holding the summary for each command not loaded.

        The stand-in is shortened to the width by click itself, as the command
        would be, so the listing reads the same without importing the command.
        """
        listed: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None:
                command = click.Command(name, help=_COMMANDS[name].summary)
            if not command.hidden:
                listed.append((name, command))
        if listed:
            limit = formatter.width - 6 - max(len(name) for name, _ in listed)
            with formatter.section("Commands"):
                formatter.write_dl([(name, c.get_short_help_str(limit)) for name, c in listed])

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
