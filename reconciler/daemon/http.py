"""The daemon's HTTP endpoints on ``--listen``: probes, metrics, a read-only API, a stream.

* ``GET /healthz`` — 200 ``ok`` while the daemon's threads run and neither
  libvirt nor the record has been unreachable for longer than
  ``--unhealthy-after`` (liveness: a 503 means restart me; see
  :mod:`reconciler.daemon.health`).
* ``GET /readyz`` — 200 when this daemon is the leader and its last pass
  converged, or a standby that reaches the record; 503 otherwise, always
  while it is unhealthy, and with ``"role": "fenced"`` while a leader's lease
  has lapsed or been lost. The JSON body says why: role, leader, problems (why
  it is unhealthy), last pass (run id, revision, failed resources) and source
  (the revision in force, a refused revision and its first errors).
* ``GET /metrics`` — Prometheus text format (:mod:`reconciler.daemon.metrics`).
* ``GET /api/v1/resources[?kind=vm]`` and ``/api/v1/resources/KIND/NAME`` —
  the record's resources, shaped like ``infinibay get -o json`` without the
  live libvirt overlay (``{"apiVersion", "kind": "List", "items": [...]}``).
* ``GET /api/v1/events[?resource=KIND/NAME][&limit=N]`` — the newest events,
  oldest first, each shaped like a line of ``infinibay events -o json``.
* ``GET /api/v1/stream`` — server-sent events (``text/event-stream``): every
  event as the record gets it (a repeat too: ``id`` is ``EVENT.COUNT``),
  ``event: event`` and the JSON of ``/api/v1/events``, plus a keep-alive
  comment every 15 s. It is what the web UI's live updates listen to.
* ``GET /``, ``/ui/...``, ``/login``, ``/logout``, ``/static/...`` and
  ``/api/v1/session`` — the web UI (:mod:`reconciler.daemon.ui`): pages
  need the session cookie (without one, a 303 to ``/login``), the session
  trades a Bearer token for it.

* ``POST /api/v1/consoles/vm/NAME`` (no body), ``GET /console/NAME`` (the
  page), ``GET /console/NAME/websockify?ticket=T`` (the websocket),
  ``GET /console/NAME/vv`` and ``GET /novnc/...`` — browser consoles, see
  :mod:`reconciler.daemon.console`.

**Access** (SPEC §11, :mod:`reconciler.daemon.auth`). ``/healthz`` and
``/readyz`` are open; ``/api/*`` and ``/metrics`` (unless
``--metrics-public``) need a token (``Authorization: Bearer``, or the
``infinibay_token`` cookie of the web UI): 401 with no detail without a
valid one, 429 after too many failed attempts from one address. What a
token may read is decided by :mod:`reconciler.models.access`: a ``user``
gets only the VMs labelled ``infinibay.io/owner: OWNER`` and their events,
here and on the stream (another's VM is a 404, as if absent), and no
``/metrics`` (403). A stream is cut once its token is revoked or expires.
A ``--listen`` address that is not loopback is refused unless
``--tls-cert``/``--tls-key`` are given; with them the listener speaks only
TLS (1.2 at least).

Nothing here writes but a token's last use (at most once a minute) and the
event of a console opened: the record is otherwise only read, so a standby
serves the API too. The one POST is a console ticket, with no body. The daemon hands the
server a :class:`~reconciler.store.store.Store` of its own (its own engine
and connection pool), so API readers never hold a connection a pass is
waiting for. Every JSON body goes through
:func:`reconciler.settings.redact`: an error may quote a URL or a driver's message.

**Bounded, whatever the clients do.** A thread per connection (the standard
library's ``ThreadingHTTPServer``, which this replaced) lets 200 clients
start 200 threads that starve the pass of the GIL and of database
connections, and lets idle or trickling sockets pile up until the process
runs out of file descriptors. Here:

* One *event-loop* thread owns every socket. It accepts, reads request heads
  without blocking, and keeps idle keep-alive connections; none of that
  costs a thread.
* A request whose head is complete goes to a *lane*: a fixed pool of
  ``workers`` threads for ``/api`` and ``/metrics``, and one thread for each
  probe, so ``/healthz`` and ``/readyz`` never queue behind the API. A
  worker answers one request in memory and hands the bytes back: the loop
  sends them, so no client, however slowly it reads, holds a worker.
* Deadlines are absolute, checked by the loop: the head must be complete
  within ``header_timeout`` of the accept (or of the first byte of a
  kept-alive connection's next request), however slowly it trickles in
  (slowloris gets a 408 and the close); an idle keep-alive connection is
  closed after ``idle_timeout``; a response may take ``write_timeout``.
  A head larger than 16 KiB is answered 431.
* At most ``max_connections`` are open. A new one makes room by closing
  the oldest idle keep-alive connection, else the one that has been reading
  its head the longest, for more than a second (503), so neither idle nor
  trickling sockets can lock out a probe. When every open connection is
  being answered, a newcomer may still ask for a probe (a reserve of 16);
  anything else gets 503 and the close. The limit may take at most half of
  ``ulimit -n``, so HTTP clients never exhaust the daemon's descriptors;
  should accepting fail anyway (``EMFILE``), the loop leaves the rest in the
  kernel's backlog for a moment.
* TLS is done by the loop too, without blocking: the handshake advances
  as bytes arrive and must end within the head's deadline (counted from the
  accept), so a stalled handshake is cut like a trickled head; nothing is
  ever answered in plain text on a TLS listener.
* An event stream keeps its connection, not a thread: the worker answers
  its head, then the loop holds it. One feeder thread reads the record once
  a second for every stream (new events, valid tokens, whose VMs are whose)
  and the loop appends to each stream what its token may see. Streams take
  at most a quarter of ``max_connections`` (then 503), and one whose client
  leaves 1 MiB unread, or does not take a write within ``write_timeout``,
  is cut.

**Why this server and not Starlette on uvicorn** (the access issue's
question). The limits above are a contract, proven by
tests/integration/test_daemon_http_load.py, and uvicorn cannot keep two of
them without replacing its protocol class: it has no deadline for
receiving a request's head (its keep-alive timer restarts on every byte, so
a trickling client holds a connection for good), and its
``limit_concurrency`` answers 503 only once a head is parsed, after the
socket is already held, so neither idle nor trickling sockets are bounded,
and nothing reserves room for the probes. Keeping them would mean a
subclass of uvicorn's private ``H11Protocol`` with timers, eviction and
probe lanes of its own: the same code as here, against an interface that
is not public and changes between releases. What the ASGI stack would
bring is in reach here without it: TLS is the standard library's
``ssl`` in non-blocking mode, server-sent events are a held connection the
loop writes to, and tokens are a check in the handler. Websockets, for
the browser consoles, did not change that: the handshake is answered by a
worker like any request, and the accepted socket then leaves the loop for
a bridge thread of its own (at most 16), framed with ``wsproto``, which is
sans-IO and so works over the same non-blocking TLS sockets. Pages of the web UI
are routes in :func:`_handler`'s ``_route``, answered by the workers like
the API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import http
import http.server
import io
import ipaddress
import json
import logging
import queue
import resource
import selectors
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import prometheus_client

from reconciler import errors, settings
from reconciler.daemon import auth, config, loop, metrics, ui
from reconciler.daemon import console as console_module
from reconciler.models import access, catalog, documents, kinds, naming, record
from reconciler.store import store as store_module

__all__ = ["Probe", "Server", "event_json"]

_log = logging.getLogger(__name__)
_DEFAULT_EVENTS = 100
_MAX_EVENTS = 1000
_KEYS_PER_READ = 1000  # a user's VMs per read of their events


def _no_consoles(domain: str) -> Any:
    raise errors.RefusedError(f"this server opens no consoles (domain {domain})")


class Probe:
    """What the probes report, supplied by the daemon as two callables."""

    def __init__(
        self,
        healthy: Callable[[], bool],
        readiness: Callable[[], tuple[bool, dict[str, Any]]],
    ) -> None:
        self.healthy = healthy
        self.readiness = readiness


def event_json(event: record.EventRecord) -> dict[str, Any]:
    return documents.event(event)


class _NotFound(Exception):
    pass


class _BadRequest(Exception):
    pass


def _kind(text: str) -> kinds.Kind:
    try:
        return catalog.parse_kind(text)
    except errors.UsageError as exc:
        raise _BadRequest(str(exc)) from exc


def _event_key(text: str) -> record.ResourceKey:
    """``vm/web-1`` (any alias), or ``Source/NAME`` for the daemon's source events."""
    kind_text, sep, name = text.partition("/")
    if sep and name and kind_text == loop.SOURCE_KIND:
        return record.ResourceKey(kind_text, name)
    try:
        kind, name = catalog.parse_ref(text)
    except errors.UsageError as exc:
        raise _BadRequest(str(exc)) from exc
    return record.ResourceKey(kind.value, name)


class _Forbidden(Exception):
    pass


class _Api:
    """The JSON API, as one caller may see it (:mod:`reconciler.models.access`)."""

    def __init__(self, store: store_module.Store) -> None:
        self.store = store

    def resources(self, query: dict[str, list[str]], who: access.Principal) -> dict[str, Any]:
        kind = _kind(query["kind"][0]).value if "kind" in query else None
        return {
            "apiVersion": kinds.API_VERSION,
            "kind": "List",
            "items": [
                documents.resource(r) for r in self.store.resources(kind) if access.visible(who, r)
            ],
        }

    def resource(self, kind_text: str, name: str, who: access.Principal) -> dict[str, Any]:
        found = self.store.get(record.ResourceKey(_kind(kind_text).value, name))
        if found is None or not access.visible(who, found):  # another's: as if absent
            raise _NotFound(f"{kind_text}/{name} is not in the record")
        return documents.resource(found)

    def events(self, query: dict[str, list[str]], who: access.Principal) -> dict[str, Any]:
        key = None
        if "resource" in query:
            key = _event_key(query["resource"][0])
        try:
            limit = int(query.get("limit", [str(_DEFAULT_EVENTS)])[0])
        except ValueError as exc:
            raise _BadRequest("limit must be a number") from exc
        limit = max(0, min(limit, _MAX_EVENTS))
        if who.role is not access.Role.USER:
            return {"items": [event_json(e) for e in self.store.events(key, limit=limit)]}
        mine = sorted(
            r.key
            for r in self.store.resources(kinds.Kind.VIRTUAL_MACHINE.value)
            if access.visible(who, r)
        )
        if key is not None:
            mine = [k for k in mine if k == key]
        found: list[record.EventRecord] = []
        for start in range(0, len(mine), _KEYS_PER_READ):
            found += self.store.events(limit=limit, keys=mine[start : start + _KEYS_PER_READ])
        found.sort(key=lambda e: (e.last_seen, e.id))
        return {"items": [event_json(e) for e in (found[-limit:] if limit else [])]}


_PROBES = ("healthz", "readyz")
_PROBE_RESERVE = 16  # connections over the limit that may still ask for a probe
_MAX_HEAD = 16 * 1024
_READ_CHUNK = 64 * 1024
_ACCEPT_BATCH = 64  # accepts per loop turn, so a flood cannot starve the reads
_SWEEP = 0.1  # seconds between deadline checks; also the loop's longest sleep
_GRACE = 1.0  # seconds a head may take before a newcomer at the limit may cut it
_ACCEPT_PAUSE = 0.5  # seconds without accepting after the process ran out of descriptors
_BACKLOG = 128
_STOP_WAIT = 5.0  # seconds close() waits for the workers' last answers
_TLS_WRITE = 16 * 1024  # bytes per TLS send: one record's worth
_STREAM_POLL = 1.0  # seconds between two reads of the record for the event streams
_STREAM_OVERLAP = 5.0  # seconds each read looks back: a slow commit's events are not missed
_STREAM_HEARTBEAT = 15.0  # seconds between keep-alive comments on an idle stream
_STREAM_BACKLOG = 1 << 20  # bytes a stream's client may leave unread before it is cut
_FOREVER = float("inf")
_EPOCH = dt.datetime.fromtimestamp(0, dt.UTC)


def _plain(status: http.HTTPStatus, text: str) -> bytes:
    """A complete ``Connection: close`` response, sent by the loop before it closes."""
    body = f"{text}\n".encode()
    return (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "Retry-After: 1\r\n\r\n"
    ).encode() + body


_BUSY = _plain(http.HTTPStatus.SERVICE_UNAVAILABLE, "too many connections; try again")
_SLOW = _plain(http.HTTPStatus.REQUEST_TIMEOUT, "the request headers took too long")
_LARGE = _plain(
    http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "the request headers are too large"
)


class _Connection:
    """One client socket and what the loop knows of it.

    Its phase: reading a head (``out`` empty, not ``idle``), with a worker
    (in the server's ``_busy``), writing the response (``out``), or kept alive
    between requests (``idle``). ``deadline`` ends the phase it is in.
    """

    __slots__ = (
        "address",
        "buffer",
        "console",
        "deadline",
        "handshaking",
        "idle",
        "keep",
        "out",
        "over_limit",
        "sock",
        "stream",
        "streamed_since",
    )

    def __init__(self, sock: socket.socket, address: Any, deadline: float, over_limit: bool):
        self.sock = sock
        self.address = address
        self.buffer = b""  # received and not yet answered
        self.out = b""  # the response, as far as it is not sent yet
        self.keep = False  # keep the connection alive once ``out`` is sent
        self.deadline = deadline
        self.idle = False
        self.over_limit = over_limit  # admitted from the reserve: one probe, then closed
        self.handshaking = isinstance(sock, ssl.SSLSocket)  # TLS: before the first read
        self.stream: access.Principal | None = None  # an event stream's, once answered
        self.streamed_since = _EPOCH  # a stream gets the events seen since it opened
        self.console: console_module.Handoff | None = None  # a console's, once answered 101


def _head_length(buffer: bytes) -> int:
    """Length of the request head at the start of ``buffer``, blank line included; -1 if partial."""
    ends = [at + len(mark) for mark in (b"\r\n\r\n", b"\n\n") if (at := buffer.find(mark)) >= 0]
    return min(ends) if ends else -1


def _probe_of(head: bytes) -> str | None:
    """``"healthz"`` or ``"readyz"`` when the head asks for that probe, else ``None``."""
    words = head.split(b"\n", 1)[0].split()
    if len(words) < 2:
        return None
    try:
        path = urllib.parse.urlsplit(words[1].decode("latin-1")).path
    except ValueError:
        return None
    parts = [part for part in path.split("/") if part]
    return parts[0] if len(parts) == 1 and parts[0] in _PROBES else None


def _listen(address: tuple[str, int]) -> socket.socket:
    host, port = address
    try:
        (family, *_), *_ = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )  # the first address's family: IPv6 for "::1", IPv4 for "127.0.0.1"
        sock = socket.create_server((host, port), family=family, backlog=_BACKLOG)
    except OSError as exc:
        raise errors.ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


def _check_descriptors(limits: config.HttpLimits) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return
    if (limits.max_connections + _PROBE_RESERVE) * 2 > soft:
        raise errors.ConfigError(
            f"--http-max-connections {limits.max_connections} would let HTTP clients take more "
            f"than half of the {soft} file descriptors this process may open (ulimit -n); "
            "lower it or raise the limit (systemd: LimitNOFILE=)"
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or ``localhost``) is reachable from this host only."""
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False


def require_tls_off_loopback(address: tuple[str, int], tls: bool) -> None:
    """Refuse a listen address that other hosts can reach unless it speaks TLS (SPEC §11)."""
    host, port = address
    if not tls and not is_loopback(host):
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise errors.ConfigError(
            f"--listen {shown} is not a loopback address: serving tokens there needs TLS; "
            "pass --tls-cert and --tls-key, or listen on 127.0.0.1"
        )


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context of ``cert`` (PEM, the chain) and ``key``; TLS 1.2 at least."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise errors.ConfigError(
            f"cannot load --tls-cert {cert} / --tls-key {key}: {reason}"
        ) from exc
    return context


@dataclasses.dataclass(frozen=True)
class _Push:
    """What the feeder read for the streams: new events, valid tokens, whose VMs are whose."""

    events: tuple[tuple[record.EventRecord, bytes], ...]
    valid: frozenset[str]  # names of the tokens that are neither revoked nor expired
    owned: dict[str, frozenset[record.ResourceKey]]  # owner label -> their VMs
    beat: bool = False


def _sse(event: record.EventRecord) -> bytes:
    """One server-sent event: ``id``, ``event: event``, the JSON of ``/api/v1/events``."""
    data = settings.redact(json.dumps(event_json(event), default=str))
    return f"id: {event.id}.{event.count}\nevent: event\ndata: {data}\n\n".encode()


class Server:
    """The bounded HTTP server on its own threads; :attr:`port` is the bound port."""

    def __init__(
        self,
        address: tuple[str, int],
        probe: Probe,
        gauges: metrics.Metrics,
        store: store_module.Store,
        limits: config.HttpLimits | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        metrics_public: bool = False,
        consoles: console_module.Service | None = None,
    ) -> None:
        self.limits = limits or config.HttpLimits()
        self._consoles = consoles or console_module.Service(_no_consoles, "")
        require_tls_off_loopback(address, tls is not None)
        _check_descriptors(self.limits)
        self._tls = tls
        self._listener = _listen(address)
        bound = self._listener.getsockname()
        self.port = int(bound[1])
        self._gauges = gauges
        self._store = store
        # Streams: at most a quarter of the connections, so they never lock out the API.
        self._max_streams = max(1, self.limits.max_connections // 4)
        self._stream_count = 0  # written by the loop, read by workers and the feeder
        self._pushes: queue.SimpleQueue[_Push] = queue.SimpleQueue()
        self._handler = _handler(
            probe,
            gauges,
            _Api(store),
            auth.Gate(store),
            metrics_public,
            lambda: self._stream_count < self._max_streams,
            ui.Pages(store, probe.readiness, secure=tls is not None),
            self._consoles,
        )
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._answered: queue.SimpleQueue[_Connection] = queue.SimpleQueue()
        self._lanes: dict[str | None, queue.SimpleQueue[_Connection | None]] = {
            lane: queue.SimpleQueue() for lane in (None, *_PROBES)
        }
        # Owned by the loop thread alone: the connections it watches, and those with a worker.
        self._watched: dict[socket.socket, _Connection] = {}
        self._busy: set[_Connection] = set()
        self._streams: set[_Connection] = set()
        self._paused_until: float | None = None
        self._next_sweep = 0.0
        self._stopping = threading.Event()
        self._closed = False
        self._loop = threading.Thread(target=self._serve, name="http", daemon=True)
        self._workers = [
            (lane, threading.Thread(target=self._work, args=(lane,), name=name, daemon=True))
            for lane, name in [
                *((None, f"http-worker-{n}") for n in range(self.limits.workers)),
                *((lane, f"http-{lane}") for lane in _PROBES),
            ]
        ]
        self._feeder = threading.Thread(target=self._feed, name="http-stream", daemon=True)

    @property
    def alive(self) -> bool:
        """Whether the loop and every worker still run (for the daemon's liveness)."""
        threads = (self._loop, self._feeder, *(t for _, t in self._workers))
        return all(t.is_alive() for t in threads)

    def start(self) -> None:
        for _, thread in self._workers:
            thread.start()
        self._feeder.start()
        self._loop.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._consoles.bridges.close()
        self._wake()
        if self._loop.is_alive():
            self._loop.join()
        if self._feeder.is_alive():
            self._feeder.join(_STOP_WAIT)
        for lane, _ in self._workers:
            self._lanes[lane].put(None)
        deadline = time.monotonic() + _STOP_WAIT
        for _, thread in self._workers:  # a worker can only be waiting for the record
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        for conn in [*self._watched.values(), *self._busy]:
            with contextlib.suppress(OSError):
                conn.sock.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    # -- the event loop: every socket operation happens here, none blocks -----------

    def _open(self) -> int:
        return len(self._watched) + len(self._busy)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: the loop wakes anyway
            self._wake_w.send(b"\0")

    def _serve(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        while not self._stopping.is_set():
            for key, _ in self._selector.select(_SWEEP):
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                elif key.data.out:
                    self._send(key.data)
                else:
                    self._receive(key.data)
            self._take_answers()
            self._take_pushes()
            self._sweep(time.monotonic())
            self._gauges.http_connections.set(self._open())

    def _watch(self, conn: _Connection, events: int) -> None:
        if conn.sock in self._watched:
            self._selector.modify(conn.sock, events, conn)
        else:
            self._watched[conn.sock] = conn
            self._selector.register(conn.sock, events, conn)

    def _unwatch(self, conn: _Connection) -> None:
        if self._watched.pop(conn.sock, None) is not None:
            self._selector.unregister(conn.sock)

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE, ENFILE, ENOBUFS: the rest waits in the backlog; retrying at
                # once would spin on a listener that stays readable.
                _log.warning("http: cannot accept a connection: %s", exc.strerror or exc)
                self._gauges.http_dropped.labels("accept_failed").inc()
                self._selector.unregister(self._listener)
                self._paused_until = time.monotonic() + _ACCEPT_PAUSE
                return
            self._admit(sock, address)

    def _admit(self, sock: socket.socket, address: Any) -> None:
        limit = self.limits.max_connections
        if self._open() >= limit:
            self._evict()
        count = self._open()
        if count >= limit + _PROBE_RESERVE:
            self._drop(sock, b"" if self._tls else _BUSY, "limit")  # no plain text to TLS
            return
        sock.setblocking(False)
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except OSError:
                self._drop(sock, b"", "tls_handshake")
                return
        deadline = time.monotonic() + self.limits.header_timeout
        self._watch(_Connection(sock, address, deadline, count >= limit), selectors.EVENT_READ)

    def _evict(self) -> None:
        """Make room: close an idle keep-alive connection, else the one reading longest.

        A head still being read is cut only once it has taken ``_GRACE``: a burst of
        clients arriving together must not evict one another before they had a chance
        to send. A connection being answered is never cut to make room.
        """
        waiting = [conn for conn in self._watched.values() if not conn.out]
        if idle := [conn for conn in waiting if conn.idle]:
            self._close(min(idle, key=lambda conn: conn.deadline))
            return
        started_before = time.monotonic() + self.limits.header_timeout - _GRACE
        if slow := [conn for conn in waiting if conn.deadline <= started_before]:
            self._refuse(min(slow, key=lambda conn: conn.deadline), _BUSY, "limit")

    def _handshake(self, conn: _Connection) -> bool:
        """Advance a TLS handshake without blocking; whether it is done.

        It runs within the head's deadline (counted from the accept), so a client
        that stalls its handshake is cut like one that trickles its head.
        """
        assert isinstance(conn.sock, ssl.SSLSocket)
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(conn, selectors.EVENT_READ)
            return False
        except ssl.SSLWantWriteError:
            self._watch(conn, selectors.EVENT_WRITE)
            return False
        except OSError:  # not TLS, or a protocol or certificate the client refused
            self._gauges.http_refused.labels("tls_handshake").inc()
            self._close(conn)
            return False
        conn.handshaking = False
        self._watch(conn, selectors.EVENT_READ)
        return True

    def _recv(self, conn: _Connection) -> bytes | None:
        """What the client sent, ``b""`` once it is gone, ``None`` if nothing is there yet."""
        try:
            data = conn.sock.recv(_READ_CHUNK)
            # TLS: a record decrypted whole may hold more than was asked for
            while isinstance(conn.sock, ssl.SSLSocket) and (more := conn.sock.pending()):
                data += conn.sock.recv(more)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except OSError:
            return b""
        return data

    def _receive(self, conn: _Connection) -> None:
        if conn.handshaking and not self._handshake(conn):
            return
        data = self._recv(conn)
        if data is None:
            return
        if conn.stream is not None:  # a stream's client has nothing to say: only its close
            if not data:
                self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        if conn.idle:  # the next request starts: its head has header_timeout
            conn.idle = False
            conn.deadline = time.monotonic() + self.limits.header_timeout
        conn.buffer += data
        self._examine(conn)

    def _examine(self, conn: _Connection) -> None:
        """Hand the connection to a lane once its buffer holds a complete head."""
        conn.buffer = conn.buffer.lstrip(b"\r\n")  # RFC 9112 2.2: ignore blank lines first
        length = _head_length(conn.buffer)
        if length > _MAX_HEAD or (length < 0 and len(conn.buffer) > _MAX_HEAD):
            self._refuse(conn, _LARGE, "head_too_large")
            return
        if length < 0:
            return
        lane = _probe_of(conn.buffer[:length])
        if conn.over_limit and lane is None:
            self._refuse(conn, _BUSY, "limit")
            return
        self._unwatch(conn)
        self._busy.add(conn)
        self._lanes[lane].put(conn)

    def _take_answers(self) -> None:
        """Start sending what the workers have answered."""
        while True:
            try:
                conn = self._answered.get_nowait()
            except queue.Empty:
                return
            self._busy.discard(conn)
            if not conn.out or self._stopping.is_set():
                self._close(conn)
                continue
            conn.deadline = time.monotonic() + self.limits.write_timeout
            self._watch(conn, selectors.EVENT_WRITE)
            self._send(conn)

    def _send(self, conn: _Connection) -> None:
        tls = isinstance(conn.sock, ssl.SSLSocket)
        try:
            sent = conn.sock.send(conn.out[:_TLS_WRITE] if tls else conn.out)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return  # TLS: retried with the same bytes, as OpenSSL wants
        except OSError:  # the client went away
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if conn.out:
            return
        if conn.console is not None:  # the 101 is out: the socket is the bridge's now
            self._unwatch(conn)
            handoff = conn.console
            self._consoles.bridges.start(conn.sock, handoff.ws, conn.buffer, handoff.guest)
        elif conn.stream is not None:  # all sent: wait for the next push, or the close
            self._streams.add(conn)
            self._stream_count = len(self._streams)
            conn.deadline = _FOREVER
            self._watch(conn, selectors.EVENT_READ)
        elif not conn.keep or conn.over_limit:
            self._close(conn)
        elif conn.buffer:  # pipelined: the next head may be here already
            conn.deadline = time.monotonic() + self.limits.header_timeout
            self._watch(conn, selectors.EVENT_READ)
            self._examine(conn)
        else:
            conn.idle = True
            conn.deadline = time.monotonic() + self.limits.idle_timeout
            self._watch(conn, selectors.EVENT_READ)

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP
        for conn in [c for c in self._watched.values() if c.deadline <= now]:
            if conn.out:
                self._gauges.http_dropped.labels("write_timeout").inc()
                self._close(conn)
            elif conn.idle:
                self._close(conn)
            else:
                self._refuse(conn, _SLOW, "header_timeout")
        if self._paused_until is not None and now >= self._paused_until:
            self._paused_until = None
            self._selector.register(self._listener, selectors.EVENT_READ)

    def _close(self, conn: _Connection) -> None:
        self._unwatch(conn)
        self._busy.discard(conn)
        if conn in self._streams:
            self._streams.discard(conn)
            self._stream_count = len(self._streams)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _refuse(self, conn: _Connection, response: bytes, reason: str) -> None:
        self._unwatch(conn)
        self._drop(conn.sock, response, reason)

    def _drop(self, sock: socket.socket, response: bytes, reason: str) -> None:
        """Answer ``response`` if the socket takes it at once, and close: never wait."""
        self._gauges.http_dropped.labels(reason).inc()
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            if response:
                sock.send(response)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(_READ_CHUNK)  # unread input would turn the close into a reset
        with contextlib.suppress(OSError):
            sock.close()

    # -- event streams: the feeder reads the record, the loop writes to the clients --

    def _take_pushes(self) -> None:
        while True:
            try:
                push = self._pushes.get_nowait()
            except queue.Empty:
                return
            for conn in list(self._streams):
                who = conn.stream
                assert who is not None
                if who.name not in push.valid:  # revoked or expired since it connected
                    self._close(conn)
                    continue
                mine = push.owned.get(who.owner or "", frozenset())
                chunk = b"".join(
                    data
                    for event, data in push.events
                    if event.last_seen >= conn.streamed_since
                    and access.event_visible(who, event, mine)
                )
                self._push(conn, chunk + (b": keep-alive\n\n" if push.beat else b""))

    def _push(self, conn: _Connection, chunk: bytes) -> None:
        if not chunk:
            return
        if len(conn.out) + len(chunk) > _STREAM_BACKLOG:  # a client that stopped reading
            self._gauges.http_dropped.labels("write_timeout").inc()
            self._close(conn)
            return
        first = not conn.out
        conn.out += chunk
        if first:
            conn.deadline = time.monotonic() + self.limits.write_timeout
            self._watch(conn, selectors.EVENT_WRITE)
            self._send(conn)

    def _feed(self) -> None:
        """Read what the streams need from the record, once per second for all of them."""
        cursor = dt.datetime.now(dt.UTC)
        delivered: dict[int, tuple[int, dt.datetime]] = {}  # event id: count, last seen
        beat = time.monotonic() + _STREAM_HEARTBEAT
        while not self._stopping.wait(_STREAM_POLL):
            if not self._stream_count:
                cursor, delivered = dt.datetime.now(dt.UTC), {}
                continue
            try:
                push, cursor = self._read_for_streams(cursor, delivered)
            except errors.InfinibayError as exc:  # the record is away: the next read catches up
                _log.warning("http: reading events for the streams failed: %s", exc)
                continue
            except Exception:  # a bug: like a worker's, logged, and the streams go on
                _log.exception("http: reading events for the streams failed")
                continue
            if time.monotonic() >= beat:
                beat = time.monotonic() + _STREAM_HEARTBEAT
                push = dataclasses.replace(push, beat=True)
            self._pushes.put(push)  # even empty: the loop cuts the streams of revoked tokens
            self._wake()

    def _read_for_streams(
        self, cursor: dt.datetime, delivered: dict[int, tuple[int, dt.datetime]]
    ) -> tuple[_Push, dt.datetime]:
        overlap = dt.timedelta(seconds=_STREAM_OVERLAP)
        rows = self._store.events(since=cursor - overlap)
        fresh = [e for e in rows if delivered.get(e.id, (None,))[0] != e.count]
        for event in fresh:
            delivered[event.id] = (event.count, event.last_seen)
        cursor = max([cursor, *(e.last_seen for e in rows)])
        for stale in [i for i, (_, seen) in delivered.items() if seen < cursor - overlap]:
            del delivered[stale]
        now = dt.datetime.now(dt.UTC)
        valid = frozenset(t.name for t in self._store.tokens() if not access.expired(t, now))
        owned: dict[str, set[record.ResourceKey]] = {}
        if fresh:
            for vm in self._store.resources(kinds.Kind.VIRTUAL_MACHINE.value):
                if owner := vm.labels.get(access.OWNER_LABEL):
                    owned.setdefault(owner, set()).add(vm.key)
        return (
            _Push(
                events=tuple((e, _sse(e)) for e in fresh),
                valid=valid,
                owned={owner: frozenset(keys) for owner, keys in owned.items()},
            ),
            cursor,
        )

    # -- the workers: they parse and answer in memory, and never touch a socket -------

    def _work(self, lane: str | None) -> None:
        requests = self._lanes[lane]
        while (conn := requests.get()) is not None:
            try:
                self._answer(conn)
            except Exception:
                _log.exception("http: answering %s failed", conn.address)
                conn.out = b""  # the loop closes the connection
            finally:
                self._answered.put(conn)
                self._wake()

    def _answer(self, conn: _Connection) -> None:
        """Answer the request at the head of the connection's buffer, into ``conn.out``."""
        handler = self._handler(conn.address, conn.buffer)
        handler.handle_one_request()
        conn.buffer = handler.rfile.read()  # whatever followed: a pipelined request
        conn.out = handler.wfile.getvalue()
        conn.keep = not handler.close_connection
        conn.stream = handler.stream
        conn.console = handler.console
        if conn.stream is not None:
            conn.streamed_since = dt.datetime.now(dt.UTC)


class _Handler(http.server.BaseHTTPRequestHandler):
    """One request answered in memory: the head from a buffer, the response into one.

    The loop reads the head and sends the response, so the standard library's
    parser and response writer work on buffers here; :meth:`__init__` skips the
    base's socket set-up and serving loop.
    """

    server_version = "infinibay-daemon"
    protocol_version = "HTTP/1.1"
    wfile: io.BytesIO
    stream: access.Principal | None = None  # set when the answer opens an event stream
    console: console_module.Handoff | None = None  # set when the answer opens a console

    def __init__(self, address: Any, head: bytes) -> None:
        self.client_address = address
        self.head = head[: _head_length(head)]
        self.rfile = io.BytesIO(head)
        self.wfile = io.BytesIO()
        self.close_connection = True


def _handler(
    probe: Probe,
    gauges: metrics.Metrics,
    api: _Api,
    gate: auth.Gate,
    metrics_public: bool,
    stream_room: Callable[[], bool],
    pages: ui.Pages,
    consoles: console_module.Service,
) -> Callable[[Any, bytes], _Handler]:
    class Handler(_Handler):
        def log_message(self, format: str, *args: Any) -> None:
            _log.debug("http: " + format, *args)

        def _send(
            self, code: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, code: int, document: Any, extra: dict[str, str] | None = None) -> None:
            text = json.dumps(document, indent=2, default=str) + "\n"
            body = settings.redact(text).encode()
            self._send(code, body, "application/json", extra)

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            parts = [p for p in url.path.split("/") if p]
            try:
                self._route(parts, query)
            except _NotFound as exc:
                self._json(404, {"error": str(exc)})
            except _BadRequest as exc:
                self._json(400, {"error": str(exc)})
            except _Forbidden:
                gauges.http_refused.labels("forbidden").inc()
                self._json(403, {"error": "forbidden"})
            except errors.InfinibayError as exc:
                self._json(503, {"error": str(exc)})
            except Exception:  # a bug: say so, keep serving; the traceback goes to the log
                _log.exception("http: GET %s failed", url.path)
                self.close_connection = True
                self._json(500, {"error": "internal error; see the daemon's log"})

        def _principal(self, page: bool = False) -> access.Principal | None:
            """Who asks; ``None`` once a 401 or 429 is answered (no detail either way).

            A ``page`` of the web UI answers a missing or invalid token with a
            redirect to the login page instead of the 401.
            """
            presented = auth.token_of(self.headers.get("Authorization"), self.headers.get("Cookie"))
            who = gate.admit(str(self.client_address[0]), presented)
            if isinstance(who, access.Principal):
                return who
            if page and who.status == 401:
                self._send(303, b"", "text/plain", {"Location": "/login"})
            elif who.status == 429:
                gauges.http_refused.labels("rate_limited").inc()
                retry = {"Retry-After": str(who.retry_after or 1)}
                self._json(429, {"error": "too many failed attempts; try again later"}, retry)
            else:
                gauges.http_refused.labels("unauthorized").inc()
                self._json(401, {"error": "unauthorized"}, {"WWW-Authenticate": "Bearer"})
            return None

        def _route(self, parts: list[str], query: dict[str, list[str]]) -> None:
            if parts == ["healthz"]:
                ok = probe.healthy()
                self._send(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n", "text/plain")
                return
            if parts == ["readyz"]:
                ready, detail = probe.readiness()
                self._json(200 if ready else 503, {"ready": ready, **detail})
                return
            if parts == ["metrics"] and metrics_public:
                self._send(200, gauges.exposition(), prometheus_client.CONTENT_TYPE_LATEST)
                return
            if parts[:1] == ["novnc"]:
                self._novnc(parts[1:])
                return
            if parts[:1] == ["console"] and len(parts) in (2, 3):
                self._console(parts[1:], query)
                return
            if ui.serves(parts):
                self._ui(parts, query)
                return
            if parts != ["metrics"] and parts[:2] != ["api", "v1"]:
                raise _NotFound(f"no such endpoint: /{'/'.join(parts)}")
            who = self._principal()
            if who is None:
                return
            if parts == ["metrics"]:
                if not access.may_read_metrics(who):
                    raise _Forbidden()
                self._send(200, gauges.exposition(), prometheus_client.CONTENT_TYPE_LATEST)
            elif parts == ["api", "v1", "resources"]:
                self._json(200, api.resources(query, who))
            elif len(parts) == 5 and parts[:3] == ["api", "v1", "resources"]:
                self._json(200, api.resource(parts[3], parts[4], who))
            elif parts == ["api", "v1", "events"]:
                self._json(200, api.events(query, who))
            elif parts == ["api", "v1", "stream"]:
                self._stream(who)
            else:
                raise _NotFound(f"no such endpoint: /{'/'.join(parts)}")

        def _ui(self, parts: list[str], query: dict[str, list[str]]) -> None:
            """The web UI (:mod:`reconciler.daemon.ui`): a page, a fragment, a file, the login."""
            page = pages.public(parts)
            if page is None:
                presented = auth.token_of(
                    self.headers.get("Authorization"), self.headers.get("Cookie")
                )
                who = gate.admit(str(self.client_address[0]), presented)
                if isinstance(who, auth.Refused):
                    reason = "rate_limited" if who.status == 429 else "unauthorized"
                    gauges.http_refused.labels(reason).inc()
                    page = pages.refused(parts, who, presented)
                else:
                    page = pages.answer(parts, query, who, presented or "")
            self._send(page.status, page.body, page.content_type, dict(page.headers))

        def _stream(self, who: access.Principal) -> None:
            """Start a server-sent event stream; the loop keeps it and the feeder fills it."""
            self.close_connection = True  # the stream ends with the connection
            if not stream_room():
                self._json(
                    503, {"error": "too many event streams; try again"}, {"Retry-After": "5"}
                )
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Accel-Buffering", "no")
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(b"retry: 3000\n: connected\n\n")
                self.stream = who

        def _refuse(self) -> None:
            self.close_connection = True  # a body, if any, is never read
            self._json(405, {"error": "read-only: only GET and HEAD are served"})

        do_PUT = do_PATCH = do_DELETE = _refuse

        def do_POST(self) -> None:
            """Only a console ticket is POSTed, with no body; everything else is read-only."""
            parts = [p for p in urllib.parse.urlsplit(self.path).path.split("/") if p]
            if len(parts) != 5 or parts[:3] != ["api", "v1", "consoles"]:
                self._refuse()
                return
            self.close_connection = True  # a body, if any, is never read
            if self.headers.get("Content-Length", "0") != "0" or self.headers.get(
                "Transfer-Encoding"
            ):
                self._json(413, {"error": "a ticket is asked for with no body"})
                return
            try:
                self._ticket(parts[3], parts[4])
            except _NotFound as exc:
                self._json(404, {"error": str(exc)})
            except _Forbidden:
                gauges.http_refused.labels("forbidden").inc()
                self._json(403, {"error": "forbidden"})
            except errors.InfinibayError as exc:
                self._json(503, {"error": str(exc)})
            except Exception:  # a bug: say so, keep serving; the traceback goes to the log
                _log.exception("http: POST %s failed", self.path)
                self._json(500, {"error": "internal error; see the daemon's log"})

        # -- consoles (reconciler.daemon.console) --------------------------------

        def _same_origin(self) -> bool:
            """A browser's ``Origin``, when sent, is this server: no other site's page asks."""
            origin = self.headers.get("Origin")
            return origin is None or urllib.parse.urlsplit(origin).netloc == self.headers.get(
                "Host"
            )

        def _consolable(self, who: access.Principal, name: str) -> record.ResourceRecord:
            """The VM ``name`` if ``who`` may open its console; else 404 or 403."""
            found = api.store.get(record.ResourceKey(kinds.Kind.VIRTUAL_MACHINE.value, name))
            if found is None:
                raise _NotFound(f"virtualmachine/{name} is not in the record")
            if not access.may_open_console(who, found) or not self._same_origin():
                raise _Forbidden()
            return found

        def _ticket(self, kind_text: str, name: str) -> None:
            if _kind(kind_text) is not kinds.Kind.VIRTUAL_MACHINE:
                raise _BadRequest(f"{kind_text!r} has no console: a console is a VM's")
            who = self._principal()
            if who is None:
                return
            self._consolable(who, name)
            secret = consoles.tickets.issue(who.name, name, consoles.host)
            self._json(
                200,
                {
                    "ticket": secret,
                    "expiresIn": consoles.tickets.ttl,
                    "path": f"/console/{urllib.parse.quote(name)}/websockify",
                },
            )

        def _console(self, parts: list[str], query: dict[str, list[str]]) -> None:
            name = parts[0]
            websocket = parts[1:] == ["websockify"]
            if len(parts) == 2 and not websocket and parts[1] != "vv":
                raise _NotFound(f"no such endpoint: {self.path}")
            who = self._principal(page=not websocket)
            if who is None:
                return
            vm = self._consolable(who, name)
            if websocket:
                self._open_console(who, vm, query.get("ticket", [""])[0])
            elif parts[1:] == ["vv"]:
                self._vv(who, vm)
            else:
                self._send(
                    200,
                    console_module.page(name).encode(),
                    "text/html; charset=utf-8",
                    console_module.PAGE_HEADERS,
                )

        def _opened(self, who: access.Principal, vm: record.ResourceRecord, how: str) -> None:
            """Record who opened a console (the token's name is the actor); never the password."""
            api.store.record_events(
                [
                    record.NewEvent(
                        vm.key,
                        record.EventType.NORMAL,
                        "ConsoleOpened",
                        f"{vm.key}: {how} opened by {who.name}",
                        actor=who.name,
                    )
                ]
            )

        def _open_console(
            self, who: access.Principal, vm: record.ResourceRecord, ticket: str
        ) -> None:
            self.close_connection = True
            if consoles.tickets.redeem(ticket, who.name, vm.key.name, consoles.host) is None:
                gauges.http_refused.labels("forbidden").inc()
                self._raw(console_module.reject(self.head, 403), 403)
                return
            if not consoles.bridges.reserve():
                self._raw(console_module.reject(self.head, 503), 503)
                return
            try:
                display = consoles.locate(naming.libvirt_name(vm.key.name, vm.annotations))
                if display.type is not kinds.GraphicsType.VNC:
                    raise console_module.ConsoleError(
                        f"{vm.key} shows SPICE: download its .vv file for virt-viewer instead"
                    )
                guest = console_module.login((display.host, display.port), display.password)
                ws, accepted = console_module.accept(self.head)
            except errors.InfinibayError as exc:
                consoles.bridges.release()
                _log.info("console: %s: %s", vm.key, exc)
                self._raw(console_module.reject(self.head, 502), 502)
                return
            except BaseException:
                consoles.bridges.release()
                raise
            self.wfile.write(accepted)
            self.console = console_module.Handoff(ws, guest)
            self._opened(who, vm, "a browser console")

        def _raw(self, response: bytes, code: int) -> None:
            """A websocket handshake's answer as it is, else the same status as JSON."""
            if response:
                self.wfile.write(response)
            else:
                self._json(code, {"error": http.HTTPStatus(code).phrase.lower()})

        def _vv(self, who: access.Principal, vm: record.ResourceRecord) -> None:
            display = consoles.locate(naming.libvirt_name(vm.key.name, vm.annotations))
            self._opened(who, vm, "a virt-viewer file")
            self._send(
                200,
                display.vv(title=vm.key.name).encode(),
                "application/x-virt-viewer",
                {"Content-Disposition": f'attachment; filename="{vm.key.name}.vv"'},
            )

        def _novnc(self, parts: list[str]) -> None:
            """noVNC's own files (public code, no data): no token needed."""
            path = consoles.novnc_file(parts)
            if path is None:
                raise _NotFound(f"no such file: {self.path}")
            self._send(200, path.read_bytes(), console_module.content_type(path))

    return Handler
