"""Graphics passwords and console addresses: the one place a display password is handled.

A generated password is made here (:func:`new_password`), written into a
domain's ``<graphics passwd=...>`` when the domain is rendered or patched, and
otherwise lives in libvirt alone: the record, shapes, plans, events and logs
only ever say whether there is one. libvirt shows it only to a read with
``VIR_DOMAIN_XML_SECURE``, and so does this module, for exactly two callers:
the executor, which gives a running display the password its new
configuration has (:func:`sync_live`), and ``infinibay console``, which prints
it (:func:`console`) or replaces it (:func:`rotate`). A password changes
in place, through ``updateDeviceFlags`` on the graphics device: the guest keeps
running and the display asks connecting clients for the new one at once.

VNC authentication uses at most 8 characters of a password (DES): a VNC
password is 8 characters, a SPICE one 24.
"""

from __future__ import annotations

import os
import secrets
import string
import urllib.parse
from pathlib import Path
from typing import Any

import libvirt
from lxml import etree

from reconciler import errors
from reconciler.hypervisor import connection, projection
from reconciler.models import console as console_model
from reconciler.models import kinds

__all__ = [
    "console",
    "fits",
    "new_password",
    "rotate",
    "sync_live",
    "write_vv",
]

_ALPHABET = string.ascii_letters + string.digits
_LENGTH = {kinds.GraphicsType.VNC: 8, kinds.GraphicsType.SPICE: 24}
_SECURE = libvirt.VIR_DOMAIN_XML_SECURE


def new_password(kind: kinds.GraphicsType) -> str:
    """A random password of the length the display type can use in full."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH.get(kind, 24)))


def fits(kind: kinds.GraphicsType, password: str) -> bool:
    """A display of ``kind`` uses all of ``password`` (VNC reads only 8 characters)."""
    return kind is not kinds.GraphicsType.VNC or len(password) <= _LENGTH[kind]


def write_vv(path: Path, text: str) -> None:
    """Write a ``.vv`` file readable by its owner alone (it holds the password)."""
    path.unlink(missing_ok=True)  # a new file gets mode 0600 whatever was there
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def _display(root: etree._Element, name: str) -> etree._Element:
    found = next(
        (g for g in root.iterfind("devices/graphics") if g.get("type") in ("vnc", "spice")), None
    )
    if found is None:
        raise errors.RefusedError(f"virtualmachine/{name} has no vnc or spice display")
    return found


def _host(display: etree._Element, uri: str) -> str:
    """The address a client connects to: the listen address, else the libvirt host's name."""
    listen = display.find("listen")
    address = (listen.get("address") if listen is not None else None) or display.get("listen")
    if address and address not in ("0.0.0.0", "::"):
        return address
    return urllib.parse.urlsplit(uri).hostname or "127.0.0.1"


def console(conn: Any, name: str, uri: str) -> console_model.Console:
    """The running display of ``name``: type, address, port and password."""
    with connection.calling("read the display of", f"domain {name}"):
        dom = conn.lookupByName(name)
        if not dom.isActive():
            raise errors.RefusedError(
                f"virtualmachine/{name} is not running: its display has no port until it starts"
            )
        display = _display(projection.tree(dom.XMLDesc(_SECURE)), name)
    port = int(display.get("port") or "-1")
    if port <= 0:
        raise errors.RefusedError(f"virtualmachine/{name}'s display has no port yet")
    return console_model.Console(
        type=kinds.GraphicsType(display.get("type", "")),
        host=_host(display, uri),
        port=port,
        password=display.get("passwd") or "",
    )


def _update(dom: Any, display: etree._Element, password: str | None, flags: int) -> None:
    if password is None:
        display.attrib.pop("passwd", "")
    else:
        display.set("passwd", password)
    display.attrib.pop("passwdValidTo", "")
    dom.updateDeviceFlags(etree.tostring(display, encoding="unicode"), flags)


def sync_live(conn: Any, name: str) -> None:
    """Give the running display the password of the persistent config (a no-op when stopped)."""
    with connection.calling("set the display password of", f"domain {name}"):
        dom = conn.lookupByName(name)
        if not dom.isActive():
            return
        config = _display(
            projection.tree(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | _SECURE)), name
        )
        live = _display(projection.tree(dom.XMLDesc(_SECURE)), name)
        wanted = config.get("passwd")
        if wanted and live.get("passwd") != wanted:
            _update(dom, live, wanted, libvirt.VIR_DOMAIN_AFFECT_LIVE)


def rotate(conn: Any, name: str) -> None:
    """A new random password, in the persistent config and, when it runs, the live display."""
    with connection.calling("rotate the display password of", f"domain {name}"):
        dom = conn.lookupByName(name)
        config = _display(
            projection.tree(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | _SECURE)), name
        )
        live = _display(projection.tree(dom.XMLDesc(_SECURE)), name) if dom.isActive() else None
        types = {kinds.GraphicsType(d.get("type", "")) for d in (config, live) if d is not None}
        # The running display may still be of the type the config had before a restart.
        password = new_password(min(types, key=lambda t: _LENGTH[t]))
        if live is not None:
            _update(dom, live, password, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        _update(dom, config, password, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
