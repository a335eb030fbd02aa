"""A generated display password: a real VNC client logs in with it, and it leaks nowhere.

A VM with ``graphics.password: generate`` runs on the real libvirtd and sits in
its firmware. ``infinibay console`` prints its ``vnc://`` URI with the password;
vncdotool (a real RFB client) completes the handshake with VNC authentication
(security type 2) and captures the firmware's framebuffer, which is not blank,
and a wrong password is refused. Then every place a password must never be is
searched for it: ``get -o json``, ``describe``, ``events -o json``,
``history -o json``, every table of the record, the daemon's API and its log,
and the logs of a verbose apply. ``--vv`` writes a 0600 virt-viewer file and
``--rotate`` replaces the password in place: the old one stops working.
"""

from __future__ import annotations

import json
import stat
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import libvirt
import pytest
from lxml import etree
from PIL import Image
from vncdotool import api, client

from tests.fixtures import database
from tests.integration.harness import Harness
from tests.integration.test_daemon import Daemon, spawn, until

pytestmark = [
    pytest.mark.integration,
    # vncdotool's VNC authentication (DES) uses cryptography's TripleDES where it is
    # deprecated; the warning is raised on the client's reactor thread.
    pytest.mark.filterwarnings("ignore:TripleDES has been moved"),
]
__all__ = ["spawn"]  # the fixture that starts daemons, shared with the daemon tests


class _Recording(client.VNCDoToolClient):  # type: ignore[misc]
    """The real client, noting the security types the server offers and the one it picks."""

    offered: ClassVar[list[tuple[int, ...]]] = []

    def _handleSecurityTypes(self, block: bytes) -> None:  # noqa: N802 - the library's name
        _Recording.offered.append(tuple(block))
        super()._handleSecurityTypes(block)


class _Factory(client.VNCDoToolFactory):  # type: ignore[misc]
    protocol = _Recording


@pytest.fixture(scope="module", autouse=True)
def _reactor() -> Iterator[None]:
    """vncdotool runs Twisted's reactor on a thread, which can start once per process."""
    yield
    api.shutdown()


def _console(h: Harness, vm: str, *extra: str) -> urllib.parse.SplitResult:
    shown = h.run("console", f"vm/{h.name(vm)}", *extra)
    assert shown.exit_code == 0, shown.output
    return urllib.parse.urlsplit(shown.output.strip().splitlines()[-1])


def _password(uri: urllib.parse.SplitResult) -> str:
    return urllib.parse.parse_qs(uri.query)["password"][0]


def _screen(uri: urllib.parse.SplitResult, password: str, path: Path) -> Image.Image:
    """One framebuffer capture through vncdotool, logged in with ``password``."""
    vnc = api.connect(
        f"{uri.hostname}::{uri.port}", password=password, factory_class=_Factory, timeout=20
    )
    try:
        vnc.captureScreen(str(path))
    finally:
        vnc.disconnect()
    with Image.open(path) as image:
        return image.copy()


def _blank(image: Image.Image) -> bool:
    extrema = image.convert("L").getextrema()
    return bool(extrema[0] == extrema[1])


def _graphics_password(h: Harness, vm: str) -> str | None:
    secure = h.domain(vm).XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_INACTIVE)
    return etree.fromstring(secure.encode()).find("devices/graphics").get("passwd")  # type: ignore[union-attr]


def test_a_vnc_client_logs_in_with_the_generated_password_and_it_leaks_nowhere(
    h: Harness, tmp_path: Path, spawn: Callable[..., Daemon]
) -> None:
    graphics = {"type": "vnc", "listen": "127.0.0.1", "password": "generate"}
    h.write(h.pool(), h.network(), h.template(graphics=graphics), h.vm("a"))
    applied = h.run("-v", "apply", "-f", str(h.workdir), "--shutdown-timeout", "1")
    assert applied.exit_code == 0, applied.output

    uri = _console(h, "a")
    password = _password(uri)
    assert uri.scheme == "vnc" and uri.hostname == "127.0.0.1" and uri.port
    assert len(password) == 8 and password == _graphics_password(h, "a")
    # Normal reads of libvirt never see it.
    assert "passwd" not in h.domain("a").XMLDesc(0)

    _Recording.offered.clear()
    deadline = time.monotonic() + 60
    screen = _screen(uri, password, tmp_path / "screen.png")
    while _blank(screen) and time.monotonic() < deadline:
        time.sleep(1)  # the firmware has not drawn yet
        screen = _screen(uri, password, tmp_path / "screen.png")
    assert not _blank(screen), "the firmware screen stayed blank"
    assert _Recording.offered and all(types == (2,) for types in _Recording.offered)
    with pytest.raises(client.AuthenticationError):
        _screen(uri, "wrong-pw", tmp_path / "refused.png")

    # Stable: a second pass changes nothing and keeps the password.
    again = h.apply()
    assert again.exit_code == 0 and "Nothing to do" in again.output, again.output
    assert _password(_console(h, "a")) == password

    daemon = spawn("--source", str(h.workdir), "--interval", "1h")
    until(lambda: daemon.readyz()["ready"], 60, "the daemon is ready", daemon)
    vm = h.name("a")
    shown = {
        "apply -v": applied.output,
        "get -o json": h.run("get", "vm", vm, "-o", "json").output,
        "get template -o json": h.run("get", "template", h.name("tpl"), "-o", "json").output,
        "get -o yaml": h.run("get", "vms", "-o", "yaml").output,
        "describe": h.run("describe", "vm", vm).output,
        "events -o json": h.run("events", f"vm/{vm}", "-o", "json").output,
        "history -o json": h.run("history", f"vm/{vm}", "-o", "json").output,
        "plan -o json": h.run("plan", "-f", str(h.workdir), "-o", "json").output,
        "record": database.record_dump(h.db_url),
        "api resources": daemon.http("/api/v1/resources")[1],
        "api vm": daemon.http(f"/api/v1/resources/virtualmachine/{vm}")[1],
        "api events": daemon.http("/api/v1/events")[1],
        "metrics": daemon.http("/metrics")[1],
    }
    template = json.loads(shown["get template -o json"])
    assert template["spec"]["graphics"]["password"] == "generate"
    assert daemon.terminate() == 0
    shown["daemon log"] = daemon.log.read_text()
    leaked = [where for where, text in shown.items() if password in text]
    assert leaked == []


def test_vv_file_is_private_and_rotate_replaces_the_password_in_place(
    h: Harness, tmp_path: Path
) -> None:
    graphics = {"type": "vnc", "listen": "127.0.0.1", "password": "generate"}
    h.write(h.pool(), h.network(), h.template(graphics=graphics), h.vm("a"))
    assert h.apply().exit_code == 0
    old = _password(_console(h, "a"))

    vv = tmp_path / "a.vv"
    written = h.run("console", f"vm/{h.name('a')}", "--vv", str(vv))
    assert written.exit_code == 0, written.output
    assert stat.S_IMODE(vv.stat().st_mode) == 0o600
    fields: dict[str, Any] = dict(
        line.split("=", 1) for line in vv.read_text().splitlines() if "=" in line
    )
    assert vv.read_text().startswith("[virt-viewer]\n")
    assert (fields["type"], fields["host"], fields["password"]) == ("vnc", "127.0.0.1", old)

    rotated = _console(h, "a", "--rotate")
    new = _password(rotated)
    assert new != old and new == _graphics_password(h, "a")
    assert _screen(rotated, new, tmp_path / "new.png").size[0] > 0
    with pytest.raises(client.AuthenticationError):
        _screen(rotated, old, tmp_path / "old.png")
    # The guest kept running, and the reconciler keeps the new password.
    assert h.state("a") == 1  # VIR_DOMAIN_RUNNING
    assert "Nothing to do" in h.apply().output
    assert _password(_console(h, "a")) == new
    events = h.run("events", f"vm/{h.name('a')}", "-o", "json").output
    assert "PasswordRotated" in events and new not in events and old not in events


def test_console_of_a_vm_without_a_password_prints_the_bare_uri(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("a"))
    assert h.apply().exit_code == 0

    uri = _console(h, "a")

    assert (uri.scheme, uri.hostname, uri.query) == ("vnc", "127.0.0.1", "")
