"""Browser consoles through a real daemon (SPEC §11): tickets, the websocket bridge, roles.

A VM with a generated VNC password runs on the real libvirtd, sitting in its
firmware. Headless Chromium opens its console page: noVNC, served from
Debian's ``novnc`` package, asks the daemon for a ticket and connects through
the daemon's websocket bridge, which logs in to QEMU's VNC server itself. The
test reads the noVNC canvas: the firmware's text is on it. The password
appears in nothing the browser received.

A websocket client (``wsproto`` over a socket, as a browser speaks it) checks
what the page cannot show: the bridge offers the browser no authentication
but ``None``, it really reaches QEMU (a ``ServerInit`` with the guest's screen
size comes back), and a ticket is refused when reused, expired, presented with
another token or from another site's page. A ``viewer`` gets no ticket, a
``user`` only for their own VM; a SPICE VM offers a ``.vv`` file instead.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import ssl
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from lxml import etree
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    RejectConnection,
    Request,
)

from reconciler.daemon import auth
from reconciler.models import access
from tests.fixtures import database, tls
from tests.integration.harness import Harness, doc
from tests.integration.test_daemon import ADMIN_TOKEN, ROOT, Daemon, grant, spawn, until

pytestmark = pytest.mark.integration
__all__ = ["spawn"]  # the fixture that starts daemons, shared with the daemon tests

OWNER = "infinibay.io/owner"
VNC = {"type": "vnc", "listen": "127.0.0.1", "password": "generate"}


def _password(h: Harness, vm: str) -> str:
    secure = h.domain(vm).XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
    found = etree.fromstring(secure.encode()).find("devices/graphics")
    assert found is not None and found.get("passwd")
    return str(found.get("passwd"))


def _post(
    port: int,
    path: str,
    secret: str | None,
    context: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    headers = dict(headers or {})
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    scheme = "https" if context is not None else "http"
    request = urllib.request.Request(
        f"{scheme}://127.0.0.1:{port}{path}", method="POST", headers=headers, data=b""
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def _ticket(
    port: int, vm: str, secret: str, context: ssl.SSLContext | None = None
) -> dict[str, Any]:
    status, body = _post(port, f"/api/v1/consoles/vm/{vm}", secret, context)
    assert status == 200, body
    ticket: dict[str, Any] = json.loads(body)
    assert ticket["expiresIn"] > 0 and ticket["path"] == f"/console/{vm}/websockify"
    return ticket


class _Socket:
    """A websocket client as a browser is one: wsproto framing over a plain socket."""

    def __init__(
        self,
        port: int,
        target: str,
        secret: str,
        origin: str | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        if context is not None:
            self.sock = context.wrap_socket(self.sock, server_hostname="127.0.0.1")
        self.ws = WSConnection(ConnectionType.CLIENT)
        headers = [(b"Authorization", f"Bearer {secret}".encode())]
        if origin is not None:
            headers.append((b"Origin", origin.encode()))
        host = f"127.0.0.1:{port}"
        self.sock.sendall(self.ws.send(Request(host=host, target=target, extra_headers=headers)))
        self.status = 0
        self.received = b""
        while not self.status:
            data = self.sock.recv(65536)
            if not data:
                break
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    self.status = 101
                elif isinstance(event, RejectConnection):
                    self.status = event.status_code
                elif isinstance(event, BytesMessage):
                    self.received += bytes(event.data)

    def send(self, data: bytes) -> None:
        self.sock.sendall(self.ws.send(Message(data=data)))

    def read(self, count: int, seconds: float = 15) -> bytes:
        deadline = time.monotonic() + seconds
        while len(self.received) < count and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                break
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, BytesMessage):
                    self.received += bytes(event.data)
                elif isinstance(event, CloseConnection):
                    return self.take(len(self.received))
        return self.take(min(count, len(self.received)))

    def take(self, count: int) -> bytes:
        data, self.received = self.received[:count], self.received[count:]
        return data

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        self.sock.close()


@contextlib.contextmanager
def _console(
    port: int,
    target: str,
    secret: str,
    origin: str | None = None,
    context: ssl.SSLContext | None = None,
) -> Iterator[_Socket]:
    ws = _Socket(port, target, secret, origin, context)
    try:
        yield ws
    finally:
        ws.close()


def _running_daemon(
    h: Harness,
    spawn: Callable[..., Daemon],
    *vms: dict[str, Any],
    graphics: dict[str, Any],
    args: tuple[str, ...] = (),
) -> Daemon:
    # No disk, no NIC: the firmware has nothing to boot and sends nothing anywhere.
    h.write(h.pool(), h.template(graphics=graphics, disks=[], networks=[]), *vms)
    applied = h.apply("--shutdown-timeout", "1")
    assert applied.exit_code == 0, applied.output
    daemon = spawn(
        "--source", str(h.workdir), "--interval", "10m", "--console-ticket-ttl", "3s", *args
    )
    if not args:
        until(lambda: daemon.readyz()["ready"], 120, "the daemon converged", daemon)
    return daemon


def _rfb_through(ws: _Socket) -> tuple[int, int]:
    """The browser's side of RFB through the bridge: only "None" offered; the guest's size."""
    assert ws.read(12) == b"RFB 003.008\n"
    ws.send(b"RFB 003.008\n")
    assert ws.read(2) == bytes([1, 1])
    ws.send(bytes([1]))
    assert ws.read(4) == struct.pack("!I", 0)
    ws.send(bytes([1]))  # ClientInit, shared: QEMU answers with ServerInit
    width, height = struct.unpack("!HH", ws.read(4))
    ws.read(16)  # the pixel format
    (length,) = struct.unpack("!I", ws.read(4))
    assert ws.read(length), "the guest's name ends ServerInit"
    return width, height


def _blank_canvas(browser: WebDriver) -> bool:
    """Whether noVNC's canvas shows one colour only (or is not there yet)."""
    distinct = browser.execute_script(
        """
        const canvas = document.querySelector('#screen canvas');
        if (!canvas || !canvas.width) return 0;
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const seen = new Set();
        for (let i = 0; i < data.length && seen.size < 3; i += 4 * 97) {
          seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
        }
        return seen.size;
        """
    )
    return int(distinct) < 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_browser_console_shows_the_firmware_and_never_receives_the_password(
    h: Harness, spawn: Callable[..., Daemon], browser: WebDriver, tmp_path: Path
) -> None:
    daemon = _running_daemon(h, spawn, h.vm("desk", powerState="Running"), graphics=VNC)
    vm = h.name("desk")
    password = _password(h, "desk")
    base = f"http://127.0.0.1:{daemon.port}"

    browser.get(f"{base}/healthz")  # a page of the daemon's, so its cookie can be set
    browser.add_cookie({"name": auth.COOKIE, "value": ADMIN_TOKEN, "path": "/"})
    browser.get(f"{base}/console/{vm}")
    WebDriverWait(browser, 90).until(
        lambda b: (
            b.find_element(By.TAG_NAME, "body").get_attribute("data-console")
            in ("connected", "disconnected", "refused")
        )
    )
    state = browser.find_element(By.TAG_NAME, "body").get_attribute("data-console")
    status = browser.find_element(By.ID, "status").text
    assert state == "connected", f"{status}\n{daemon.tail()}"
    WebDriverWait(browser, 60, poll_frequency=0.5).until(lambda b: not _blank_canvas(b))
    shot = tmp_path / "console.png"
    browser.save_screenshot(str(shot))
    if os.environ.get("INFINIBAY_SCREENSHOTS"):
        shutil.copy(shot, ROOT / "docs" / "screenshots" / "ui-console.png")

    # Nothing the browser got holds the password: the page, its script, noVNC's.
    received = [browser.page_source]
    for path in ("/static/console.js", f"/console/{vm}"):
        received.append(daemon.http(path)[1])
    assert not [text for text in received if password in text]
    events = json.loads(daemon.http(f"/api/v1/events?resource=vm/{vm}")[1])["items"]
    opened = [e for e in events if e["reason"] == "ConsoleOpened"]
    assert opened and opened[-1]["actor"] == "integration-admin", events
    assert daemon.terminate() == 0
    kept = {"daemon log": daemon.log.read_text(), "record": database.record_dump(h.db_url)}
    assert [where for where, text in kept.items() if password in text or ADMIN_TOKEN in text] == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_ticket_is_single_use_short_lived_and_bound_to_its_token_and_site(
    h: Harness, spawn: Callable[..., Daemon]
) -> None:
    vms = [
        doc(
            "VirtualMachine",
            h.name(short),
            {"template": h.name("tpl"), "powerState": "Running"},
            labels={OWNER: owner},
        )
        for short, owner in (("alice-vm", "alice"), ("bob-vm", "bob"))
    ]
    daemon = _running_daemon(h, spawn, *vms, graphics=VNC)
    port, alice_vm, bob_vm = daemon.port, h.name("alice-vm"), h.name("bob-vm")
    password = _password(h, "alice-vm")

    ticket = _ticket(port, alice_vm, ADMIN_TOKEN)
    target = f"{ticket['path']}?ticket={ticket['ticket']}"
    with _console(port, target, ADMIN_TOKEN) as ws:
        assert ws.status == 101
        width, height = _rfb_through(ws)
        assert width >= 320 and height >= 200, (width, height)
        assert password.encode() not in ws.received
    with _console(port, target, ADMIN_TOKEN) as ws:
        assert ws.status == 403, "a ticket is single-use"

    other = grant(h.db_url, "integration-other-admin", "ib_integration-other-admin-token")
    ticket = _ticket(port, alice_vm, ADMIN_TOKEN)
    with _console(port, f"{ticket['path']}?ticket={ticket['ticket']}", other) as ws:
        assert ws.status == 403, "a ticket is bound to the token that asked for it"
    ticket = _ticket(port, alice_vm, ADMIN_TOKEN)
    target = f"{ticket['path']}?ticket={ticket['ticket']}"
    with _console(port, target, ADMIN_TOKEN, origin="http://evil.example") as ws:
        assert ws.status == 403, "another site's page cannot open a console"
    ticket = _ticket(port, alice_vm, ADMIN_TOKEN)
    wrong_vm = f"/console/{bob_vm}/websockify?ticket={ticket['ticket']}"
    with _console(port, wrong_vm, ADMIN_TOKEN) as ws:
        assert ws.status == 403, "a ticket is bound to its VM"
    ticket = _ticket(port, alice_vm, ADMIN_TOKEN)
    time.sleep(3.5)  # --console-ticket-ttl 3s
    with _console(port, f"{ticket['path']}?ticket={ticket['ticket']}", ADMIN_TOKEN) as ws:
        assert ws.status == 403, "a ticket expires"

    viewer = grant(
        h.db_url, "integration-viewer", "ib_integration-viewer-token", access.Role.VIEWER
    )
    alice = grant(
        h.db_url, "integration-alice", "ib_integration-alice-token", access.Role.USER, "alice"
    )
    path = "/api/v1/consoles/vm/{}"
    assert _post(port, path.format(alice_vm), viewer)[0] == 403
    assert _post(port, path.format(bob_vm), alice)[0] == 403
    assert _post(port, path.format(alice_vm), alice)[0] == 200
    assert _post(port, path.format(alice_vm), None)[0] == 401
    assert _post(port, path.format(h.name("nope")), ADMIN_TOKEN)[0] == 404
    evil = {"Origin": "http://evil.example"}
    assert _post(port, path.format(alice_vm), ADMIN_TOKEN, headers=evil)[0] == 403
    assert daemon.http(f"/console/{bob_vm}/vv", alice)[0] == 403
    page = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    page.request("GET", f"/console/{alice_vm}")
    answer = page.getresponse()
    assert (answer.status, answer.getheader("Location")) == (303, "/login")
    page.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_spice_vm_offers_a_virt_viewer_file_and_no_browser_console(
    h: Harness, spawn: Callable[..., Daemon]
) -> None:
    spice = {"type": "spice", "listen": "127.0.0.1", "password": "generate"}
    daemon = _running_daemon(h, spawn, h.vm("spice", powerState="Running"), graphics=spice)
    vm = h.name("spice")
    request = urllib.request.Request(
        f"http://127.0.0.1:{daemon.port}/console/{vm}/vv",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        disposition = resp.headers["Content-Disposition"]
        vv = resp.read().decode()
    assert disposition == f'attachment; filename="{vm}.vv"'
    fields = dict(line.split("=", 1) for line in vv.splitlines() if "=" in line)
    assert (fields["type"], fields["host"]) == ("spice", "127.0.0.1")
    assert fields["password"] == _password(h, "spice")
    ticket = _ticket(daemon.port, vm, ADMIN_TOKEN)
    with _console(daemon.port, f"{ticket['path']}?ticket={ticket['ticket']}", ADMIN_TOKEN) as ws:
        assert ws.status == 502, "SPICE is not bridged to noVNC"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_console_over_tls_reaches_the_guest(
    h: Harness, spawn: Callable[..., Daemon], tmp_path: Path
) -> None:
    cert, key = tls.self_signed(tmp_path)
    args = ("--tls-cert", str(cert), "--tls-key", str(key))
    daemon = _running_daemon(h, spawn, h.vm("tls", powerState="Running"), graphics=VNC, args=args)
    trusted = ssl.create_default_context(cafile=str(cert))
    vm = h.name("tls")

    def ticket() -> dict[str, Any]:
        with contextlib.suppress(OSError, AssertionError):
            return _ticket(daemon.port, vm, ADMIN_TOKEN, trusted)
        return {}

    found = until(ticket, 120, "the daemon answers over TLS", daemon)
    target = f"{found['path']}?ticket={found['ticket']}"
    with _console(daemon.port, target, ADMIN_TOKEN, context=trusted) as ws:
        assert ws.status == 101
        assert _rfb_through(ws)[0] >= 320
        ws.send(struct.pack("!BxHHHHH", 3, 0, 0, 0, 64, 64))  # a framebuffer update request
        assert ws.read(1) == bytes([0]), "the guest's update came back through TLS"
