"""``infinibay console vm/NAME``: where a guest's display listens, with its password.

The one command that shows a display password (SPEC §9): it reads the running
domain's display from libvirt (the password lives nowhere else) and prints
``vnc://HOST:PORT?password=PW`` or ``spice://HOST:PORT?password=PW``
(``remote-viewer URI`` opens both; it logs in to SPICE with the URI's password
and asks for a VNC one), or writes a virt-viewer ``.vv`` file, mode 0600, that
``remote-viewer FILE`` opens and logs in with. ``--rotate`` first replaces the
password in place (the running display and the persistent config; clients
that are connected stay connected) and records an event that says so, without
the password.
"""

from __future__ import annotations

from pathlib import Path

import click

from reconciler import errors
from reconciler.cli import common
from reconciler.hypervisor import graphics
from reconciler.models import kinds, naming, record

__all__ = ["console"]


def _vm(text: str) -> str:
    """``vm/NAME`` (any VM kind alias) or a bare ``NAME``."""
    if "/" not in text:
        return text
    kind, name = common.parse_ref(text)
    if kind is not kinds.Kind.VIRTUAL_MACHINE:
        raise click.BadParameter(f"{text!r} is not a VirtualMachine: a console is a VM's")
    return name


@click.command()
@click.argument("target", metavar="vm/NAME")
@click.option(
    "--vv",
    "vv_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write a virt-viewer connection file (mode 0600) instead of printing the URI.",
)
@click.option("--rotate", is_flag=True, help="Set a new random password first (in place).")
@click.pass_context
def console(ctx: click.Context, target: str, vv_file: Path | None, rotate: bool) -> None:
    """Print the graphics URI of a running VM with its password, or write a .vv file."""
    name = _vm(target)
    key = record.ResourceKey(kinds.Kind.VIRTUAL_MACHINE.value, name)
    with common.open_store(ctx) as store:
        rec = store.get(key)
        if rec is None:
            raise errors.NotFound(f"{key} not found in the record")
        domain = naming.libvirt_name(name, rec.annotations)  # the domain's name in libvirt
        with common.hypervisor(ctx) as hv:
            if rotate:
                hv.rotate_graphics_password(domain)
                store.record_events(
                    [
                        record.NewEvent(
                            key,
                            record.EventType.NORMAL,
                            "PasswordRotated",
                            f"{key}: the display password was replaced",
                        )
                    ]
                )
            found = hv.console(domain)
    if vv_file is not None:
        graphics.write_vv(vv_file, found.vv(title=name))
        click.echo(f"wrote {vv_file} (open it with: remote-viewer {vv_file})")
        return
    click.echo(found.uri)
