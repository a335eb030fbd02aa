"""Browser consoles (SPEC §11): single-use tickets, and a bridge from a websocket to VNC.

The web UI's console page asks for a ticket (``POST /api/v1/consoles/vm/NAME``),
then opens a websocket on ``/console/NAME/websockify?ticket=T`` that noVNC
speaks RFB over. What is decided here:

* **A ticket is single-use, short-lived and bound.** It is 256 random bits,
  valid for ``ttl`` seconds (60 by default), and it names the token that
  asked, the VM and the hypervisor. Redeeming it removes it, whether or not
  it matched, so a ticket seen twice is refused the second time; a ticket
  presented with another token, for another VM or after the VM moved is
  refused like an unknown one. Tickets live in memory only: a daemon
  restart voids them, which costs a click. At most :data:`MAX_TICKETS` are
  outstanding; the oldest go first.
* **The graphics password never reaches the browser.** The bridge logs in
  to the guest's VNC server itself (:func:`login`: RFB 3.8, VNC
  authentication with the password read from libvirt at that moment), then
  tells the browser the server needs no authentication
  (:class:`_Greeting`), and from the client's ``ClientInit`` on copies
  bytes both ways. noVNC never asks for a password and never has one.
* **A bridge is one thread with two non-blocking sockets**, the browser's
  (TLS under ``--tls-cert``) and the guest's, framed with ``wsproto``
  (sans-IO, so the same code serves both). It reads from one side only
  while the other side's backlog is under :data:`_BACKLOG`, so a slow
  browser slows the guest's updates instead of growing memory. At most
  :data:`MAX_BRIDGES` run at once; the next console is a 503.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import secrets
import selectors
import socket
import ssl
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import jinja2
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from reconciler import errors
from reconciler.models import console as console_model

__all__ = [
    "MAX_BRIDGES",
    "MAX_TICKETS",
    "PAGE_HEADERS",
    "Bridges",
    "ConsoleError",
    "Handoff",
    "Service",
    "Ticket",
    "Tickets",
    "accept",
    "content_type",
    "login",
    "page",
    "reject",
    "vnc_response",
]

_log = logging.getLogger(__name__)

MAX_TICKETS = 1024
MAX_BRIDGES = 16
_RFB_VERSION = b"RFB 003.008\n"
_NONE, _VNC_AUTH = 1, 2  # RFB security types
_LOGIN_TIMEOUT = 5.0  # seconds for the guest's VNC server to greet and log us in
_CHUNK = 64 * 1024
_TLS_WRITE = 16 * 1024
_BACKLOG = 4 << 20  # bytes one side may leave unsent before the other side is not read
_POLL = 0.5  # seconds between two looks at the stop flag


class ConsoleError(errors.InfinibayError):
    """The guest's display could not be reached or refused us; the message says which."""


@dataclasses.dataclass(frozen=True)
class Ticket:
    """What a ticket is bound to: whose token asked, for which VM, on which hypervisor."""

    token: str
    vm: str
    host: str
    expires: float


class Tickets:
    """Outstanding tickets, in memory; thread-safe."""

    def __init__(self, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._open: OrderedDict[str, Ticket] = OrderedDict()

    def issue(self, token: str, vm: str, host: str) -> str:
        """A new ticket for ``token`` to open ``vm`` on ``host``: its secret."""
        secret = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            for stale in [s for s, t in self._open.items() if t.expires <= now]:
                del self._open[stale]
            while len(self._open) >= MAX_TICKETS:
                self._open.popitem(last=False)
            self._open[secret] = Ticket(token, vm, host, now + self.ttl)
        return secret

    def redeem(self, secret: str, token: str, vm: str, host: str) -> Ticket | None:
        """The ticket if it is valid for exactly this; it is gone either way."""
        with self._lock:
            found = self._open.pop(secret, None)
            now = self._clock()
        if found is None or found.expires <= now:
            return None
        if (found.token, found.vm, found.host) != (token, vm, host):
            return None
        return found


# -- RFB: logging in to the guest's display on the browser's behalf ------------------


def vnc_response(password: str, challenge: bytes) -> bytes:
    """RFB's VNC authentication: the challenge DES-encrypted with the password as key.

    The key is the password's first 8 bytes, NUL-padded, each byte bit-reversed
    (RFC 6143 §7.2.2 and every VNC server since). Triple DES with one key thrice
    is single DES.
    """
    key = bytes(int(f"{b:08b}"[::-1], 2) for b in password.encode("latin-1")[:8].ljust(8, b"\0"))
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


def _exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConsoleError("the guest's display closed the connection while logging in")
        data += chunk
    return data


def _reason(sock: socket.socket) -> str:
    (length,) = struct.unpack("!I", _exactly(sock, 4))
    return _exactly(sock, min(length, 1024)).decode("utf-8", "replace")


def login(
    address: tuple[str, int], password: str, timeout: float = _LOGIN_TIMEOUT
) -> socket.socket:
    """A socket to the guest's VNC server, logged in and ready for the client's ``ClientInit``."""
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as exc:
        raise ConsoleError(f"cannot reach the guest's display: {exc.strerror or exc}") from exc
    try:
        _greet(sock, password)
    except (OSError, ConsoleError, struct.error) as exc:
        sock.close()
        if isinstance(exc, ConsoleError):
            raise
        raise ConsoleError(f"logging in to the guest's display failed: {exc}") from exc
    sock.settimeout(None)
    return sock


def _greet(sock: socket.socket, password: str) -> None:
    version = _exactly(sock, 12)
    if not version.startswith(b"RFB 003."):
        raise ConsoleError("the guest's display does not speak RFB")
    minor = int(version[8:11])
    if minor < 7:  # 3.3: the server picks the type
        sock.sendall(b"RFB 003.003\n")
        (chosen,) = struct.unpack("!I", _exactly(sock, 4))
        offered = {chosen}
    else:
        sock.sendall(_RFB_VERSION)
        (count,) = _exactly(sock, 1)
        if count == 0:
            raise ConsoleError(f"the guest's display refused us: {_reason(sock)}")
        offered = set(_exactly(sock, count))
    if password and _VNC_AUTH in offered:
        chosen = _VNC_AUTH
    elif _NONE in offered:
        chosen = _NONE
    else:
        raise ConsoleError(
            f"the guest's display asks for a login this bridge does not speak ({sorted(offered)})"
        )
    if minor >= 7:
        sock.sendall(bytes([chosen]))
    if chosen == _VNC_AUTH:
        sock.sendall(vnc_response(password, _exactly(sock, 16)))
    if chosen == _VNC_AUTH or minor >= 8:
        (result,) = struct.unpack("!I", _exactly(sock, 4))
        if result != 0:
            why = _reason(sock) if minor >= 8 else "authentication failed"
            raise ConsoleError(f"the guest's display refused the password: {why}")


class _Greeting:
    """The browser's side of the handshake: a server that asks for no authentication.

    :meth:`feed` takes what the browser sent and returns what to answer it, and
    what is past the handshake (for the guest). RFB 3.3, 3.7 and 3.8 clients.
    """

    def __init__(self) -> None:
        self.done = False
        self._minor = 0
        self._pending = b""

    @staticmethod
    def hello() -> bytes:
        return _RFB_VERSION

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        if self.done:
            return b"", data
        self._pending += data
        answer = b""
        if not self._minor:
            if len(self._pending) < 12:
                return b"", b""
            version, self._pending = self._pending[:12], self._pending[12:]
            if not version.startswith(b"RFB 003.") or not version[8:11].isdigit():
                raise ConsoleError("the browser does not speak RFB")
            self._minor = max(3, min(8, int(version[8:11])))
            if self._minor < 7:
                self.done = True
                rest, self._pending = self._pending, b""
                return struct.pack("!I", _NONE), rest
            answer = bytes([1, _NONE])
            if not self._pending:
                return answer, b""
        choice, self._pending = self._pending[:1], self._pending[1:]
        if choice != bytes([_NONE]):
            raise ConsoleError("the browser chose a security type that was not offered")
        self.done = True
        rest, self._pending = self._pending, b""
        result = struct.pack("!I", 0) if self._minor >= 8 else b""
        return answer + result, rest


# -- the websocket: its handshake in a worker, its frames in a bridge -----------------


def _request(head: bytes) -> tuple[WSConnection, Request]:
    ws = WSConnection(ConnectionType.SERVER)
    ws.receive_data(head)
    for event in ws.events():
        if isinstance(event, Request):
            return ws, event
    raise ConsoleError("not a websocket handshake")


def accept(head: bytes) -> tuple[WSConnection, bytes]:
    """Accept the websocket handshake in ``head``: the connection and the 101 to send.

    noVNC offers the ``binary`` subprotocol or none; the answer picks ``binary``
    when offered.
    """
    ws, request = _request(head)
    subprotocol = "binary" if "binary" in request.subprotocols else None
    return ws, ws.send(AcceptConnection(subprotocol=subprotocol))


def reject(head: bytes, status: int) -> bytes:
    """The refusal of a websocket handshake, e.g. 403 for a ticket that is not valid."""
    try:
        ws, _ = _request(head)
    except Exception:  # not even a handshake: the handler answers it as plain HTTP
        return b""
    return ws.send(RejectConnection(status_code=status, has_body=False))


@dataclasses.dataclass
class _Side:
    sock: socket.socket
    out: bytes = b""
    closed: bool = False

    def recv(self) -> bytes | None:
        """What came, ``b""`` when the peer is gone, ``None`` when nothing is there yet."""
        try:
            data = self.sock.recv(_CHUNK)
            while isinstance(self.sock, ssl.SSLSocket) and (more := self.sock.pending()):
                data += self.sock.recv(more)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except OSError:
            return b""
        return data

    def flush(self) -> None:
        while self.out:
            tls = isinstance(self.sock, ssl.SSLSocket)
            try:
                sent = self.sock.send(self.out[:_TLS_WRITE] if tls else self.out)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            except OSError:
                self.closed = True
                self.out = b""
                return
            self.out = self.out[sent:]


class _Bridge:
    """One console: the browser's websocket on one side, the guest's VNC on the other."""

    def __init__(
        self, browser: socket.socket, ws: WSConnection, leftover: bytes, guest: socket.socket
    ) -> None:
        browser.setblocking(False)
        guest.setblocking(False)
        self.browser = _Side(browser)
        self.guest = _Side(guest)
        self.ws = ws
        self.greeting = _Greeting()
        self.leftover = leftover
        self.stopping = threading.Event()

    def run(self) -> None:
        with contextlib.ExitStack() as stack:
            for side in (self.browser, self.guest):
                stack.callback(side.sock.close)
            self.browser.out += self.ws.send(Message(data=self.greeting.hello()))
            if self.leftover:
                self._from_browser(self.leftover)
            with selectors.DefaultSelector() as selector:
                self._pump(selector)

    def _pump(self, selector: selectors.BaseSelector) -> None:
        selector.register(self.browser.sock, selectors.EVENT_READ, self.browser)
        selector.register(self.guest.sock, selectors.EVENT_READ, self.guest)
        while not self.stopping.is_set():
            for side, other in ((self.browser, self.guest), (self.guest, self.browser)):
                side.flush()
                events = selectors.EVENT_WRITE if side.out else 0
                if len(other.out) < _BACKLOG and not side.closed:
                    events |= selectors.EVENT_READ
                selector.modify(side.sock, events or selectors.EVENT_READ, side)
            if self.browser.closed or self.guest.closed:
                break
            ready = selector.select(_POLL)
            for key, mask in ready:
                side = key.data
                if mask & selectors.EVENT_READ and (data := side.recv()) is not None:
                    if side is self.browser:
                        self._from_browser(data)
                    else:
                        self._from_guest(data)
            tls = self.browser.sock
            pending = isinstance(tls, ssl.SSLSocket) and tls.pending()  # decrypted, unread
            if pending and (data := self.browser.recv()) is not None:
                self._from_browser(data)
        self._goodbye()

    def _from_browser(self, data: bytes) -> None:
        if not data:
            self.browser.closed = True
            return
        self.ws.receive_data(data)
        for event in self.ws.events():
            self._on(event)

    def _on(self, event: Event) -> None:
        if isinstance(event, BytesMessage):
            answer, rest = self.greeting.feed(bytes(event.data))
            if answer:
                self.browser.out += self.ws.send(Message(data=answer))
            self.guest.out += rest
        elif isinstance(event, Ping):
            self.browser.out += self.ws.send(event.response())
        elif isinstance(event, CloseConnection):
            with contextlib.suppress(Exception):  # already closing: nothing more to say
                self.browser.out += self.ws.send(event.response())
            self.browser.flush()
            self.browser.closed = True
        elif isinstance(event, TextMessage):
            raise ConsoleError("the browser sent text on a binary console")

    def _from_guest(self, data: bytes) -> None:
        if not data:
            self.guest.closed = True
            return
        self.browser.out += self.ws.send(Message(data=data))

    def _goodbye(self) -> None:
        with contextlib.suppress(Exception):  # the browser may be gone already
            self.browser.out += self.ws.send(CloseConnection(code=1000))
            self.browser.sock.setblocking(True)
            self.browser.sock.settimeout(1.0)
            self.browser.sock.sendall(self.browser.out)


class Bridges:
    """The consoles open at once, each on a thread of its own; at most :data:`MAX_BRIDGES`."""

    def __init__(self, limit: int = MAX_BRIDGES) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._open: set[_Bridge] = set()
        self._reserved = 0

    def reserve(self) -> bool:
        """Hold a place for a console about to open; ``False`` when none is left."""
        with self._lock:
            if len(self._open) + self._reserved >= self.limit:
                return False
            self._reserved += 1
            return True

    def release(self) -> None:
        """Give back a place :meth:`reserve` held, for a console that did not open."""
        with self._lock:
            self._reserved = max(0, self._reserved - 1)

    def start(
        self, browser: socket.socket, ws: WSConnection, leftover: bytes, guest: socket.socket
    ) -> None:
        """Run the bridge of a reserved place; the sockets are the bridge's from here on."""
        bridge = _Bridge(browser, ws, leftover, guest)
        with self._lock:
            self._reserved = max(0, self._reserved - 1)
            self._open.add(bridge)
        threading.Thread(target=self._run, args=(bridge,), name="console", daemon=True).start()

    def _run(self, bridge: _Bridge) -> None:
        try:
            bridge.run()
        except ConsoleError as exc:
            _log.info("console: closed: %s", exc)
        except Exception:  # a bug: logged, and only this console ends
            _log.exception("console: the bridge failed")
        finally:
            with self._lock:
                self._open.discard(bridge)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._open)

    def close(self) -> None:
        """Stop every bridge (the daemon is stopping); each closes its sockets."""
        with self._lock:
            for bridge in self._open:
                bridge.stopping.set()


# -- what the HTTP handler needs: tickets, bridges, the guest's display, noVNC --------


@dataclasses.dataclass(frozen=True)
class Handoff:
    """A websocket accepted and a guest logged in to: the loop hands both to a bridge."""

    ws: WSConnection
    guest: socket.socket


@dataclasses.dataclass
class Service:
    """The consoles of one daemon: who may hold a ticket, and how to reach a display.

    ``locate`` reads a running domain's display from libvirt (type, address,
    port, password) by the domain's name; ``host`` is the hypervisor tickets
    are bound to; ``novnc`` the directory noVNC is served from (Debian's
    ``novnc`` package by default, ``--novnc-path``).
    """

    locate: Callable[[str], console_model.Console]
    host: str
    tickets: Tickets = dataclasses.field(default_factory=Tickets)
    bridges: Bridges = dataclasses.field(default_factory=Bridges)
    novnc: Path = Path("/usr/share/novnc")

    def novnc_file(self, parts: list[str]) -> Path | None:
        """The file of noVNC that ``/novnc/PARTS`` names, if it is inside :attr:`novnc`."""
        if not parts or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            return None
        root = self.novnc.resolve()
        path = root.joinpath(*parts).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path


PAGE_HEADERS = {
    # noVNC is an ES module from /novnc; the page runs no inline script, and the
    # websocket goes back to this server only.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
}


def content_type(path: Path) -> str:
    """What a static file is (a module script must come as JavaScript to run)."""
    return _TYPES.get(path.suffix, "application/octet-stream")


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("reconciler.daemon", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def page(name: str) -> str:
    """The console page of VM ``name``: noVNC, fed by :mod:`static/console.js`."""
    return _templates().get_template("console.html").render(name=name)
