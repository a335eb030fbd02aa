"""``infinibay --help`` lists the commands from their summaries, importing none of them."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from reconciler.cli import main


@pytest.mark.parametrize("name", sorted(main._COMMANDS))
def test_each_summary_is_the_first_paragraph_of_its_commands_help(name: str) -> None:
    command = main.cli.get_command(click.Context(main.cli), name)
    assert command is not None
    assert command.short_help is None and not command.deprecated and not command.hidden
    first = (command.help or "").split("\n\n")[0]
    assert main._COMMANDS[name].summary == " ".join(first.split())


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_the_listing_reads_as_the_loaded_commands_would_write_it(width: int) -> None:
    loaded = click.HelpFormatter(width=width)
    click.Group.format_commands(main.cli, click.Context(main.cli), loaded)  # imports them all
    unloaded = main._Group(name="infinibay")
    listed = click.HelpFormatter(width=width)
    unloaded.format_commands(click.Context(unloaded), listed)
    assert listed.getvalue() == loaded.getvalue()
    assert not unloaded.commands


def test_help_imports_no_command_module() -> None:
    probe = (
        "import sys\n"
        "from reconciler.cli import main\n"
        "try:\n"
        "    main.cli.main(['--help'], prog_name='infinibay')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('reconciler.cli.', "
        "'reconciler.store', 'reconciler.hypervisor', 'sqlalchemy', 'libvirt'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "Commands:" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "['reconciler.cli.main']"
