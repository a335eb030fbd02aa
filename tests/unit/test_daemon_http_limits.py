"""The HTTP server's bounds: deadlines, the connection limit, fixed threads, loopback only.

Real sockets on a loopback port against the real server over a real (SQLite)
record, with limits small enough that each bound is reached within a second
or two. The daemon-level proof under 200 clients, with a real libvirtd,
is tests/integration/test_daemon_http_load.py.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import logging
import resource
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import errors
from reconciler.daemon import config, metrics
from reconciler.daemon import http as http_module
from reconciler.models import record
from reconciler.store import store as store_module
from tests.fixtures import tls
from tests.unit.test_daemon_http import ADMIN_SECRET, Endpoints

_GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
_GET_READYZ = b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"
_BEARER = f"Authorization: Bearer {ADMIN_SECRET}\r\n".encode()
_GET_RESOURCES = b"GET /api/v1/resources HTTP/1.1\r\nHost: t\r\n" + _BEARER + b"\r\n"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[store_module.Store]:
    opened = store_module.Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        yield opened
    finally:
        opened.close()


Serve = Callable[[config.HttpLimits], Endpoints]


@pytest.fixture
def serve(store: store_module.Store) -> Iterator[Serve]:
    started: list[Endpoints] = []

    def start(limits: config.HttpLimits) -> Endpoints:
        started.append(Endpoints(store, limits))
        return started[-1]

    yield start
    for served in started:
        served.server.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


# Bytes read past the end of a response (pipelined answers may arrive in one segment),
# kept for the next read_response on the same socket.
_unread: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()


def _more(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise AssertionError("the server closed the connection before a whole response")
    return chunk


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, read from a kept-alive socket."""
    received = _unread.pop(sock, b"")
    while b"\r\n\r\n" not in received:
        received += _more(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += _more(sock)
    if len(body) > length:
        _unread[sock] = body[length:]
    return head + b"\r\n\r\n" + body[:length]


def dropped(gauges: metrics.Metrics, reason: str) -> float:
    wanted = f'infinibay_http_dropped_connections_total{{reason="{reason}"}} '
    for line in gauges.exposition().decode().splitlines():
        if line.startswith(wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_client_trickling_its_headers_is_cut_at_the_deadline_not_per_byte(
    serve: Serve,
) -> None:
    endpoints = serve(config.HttpLimits(header_timeout=1.0))
    sock = connect(endpoints.server.port)
    started = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    with sock:
        for n in range(30):  # one header line every 0.1 s: each read is prompt
            try:
                sock.sendall(f"X-Slow-{n}: y\r\n".encode())
            except OSError:
                break
            time.sleep(0.1)
        answer = read_until_closed(sock)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.9 <= elapsed < 3.0
    assert dropped(endpoints.metrics, "header_timeout") == 1.0


def test_a_connection_that_never_sends_a_request_is_closed_at_the_deadline(
    serve: Serve,
) -> None:
    endpoints = serve(config.HttpLimits(header_timeout=0.5))
    started = time.monotonic()
    with connect(endpoints.server.port) as sock:
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.4 <= time.monotonic() - started < 2.5


def test_a_kept_alive_connection_serves_requests_then_closes_when_idle(
    serve: Serve,
) -> None:
    endpoints = serve(config.HttpLimits(idle_timeout=0.5))
    with connect(endpoints.server.port) as sock:
        for _ in range(3):
            sock.sendall(_GET_HEALTHZ)
            assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        idle = time.monotonic()
        assert read_until_closed(sock) == b""
    assert 0.4 <= time.monotonic() - idle < 2.5


def test_pipelined_requests_are_answered_in_order_on_one_connection(
    serve: Serve,
) -> None:
    endpoints = serve(config.HttpLimits())
    with connect(endpoints.server.port) as sock:
        sock.sendall(_GET_HEALTHZ + b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n" + _GET_HEALTHZ)
        answers = [read_response(sock) for _ in range(3)]
    assert [a.split(b" ", 2)[1] for a in answers] == [b"200", b"404", b"200"]


def test_a_request_head_over_16kib_is_refused_with_431(serve: Serve) -> None:
    endpoints = serve(config.HttpLimits())
    with connect(endpoints.server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20_000)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert dropped(endpoints.metrics, "head_too_large") == 1.0


def test_at_the_limit_the_idle_then_the_longest_reading_connection_makes_room(
    serve: Serve,
) -> None:
    endpoints = serve(config.HttpLimits(max_connections=2, idle_timeout=30, header_timeout=30))
    port = endpoints.server.port
    with connect(port) as silent, connect(port) as kept:
        silent.settimeout(0.5)
        kept.sendall(_GET_RESOURCES)
        assert read_response(kept).startswith(b"HTTP/1.1 200 ")
        time.sleep(1.2)  # the silent one has been reading for longer than the grace
        with connect(port) as newcomer:  # 1: the idle one goes, though it is younger
            newcomer.sendall(_GET_HEALTHZ)
            assert read_response(newcomer).startswith(b"HTTP/1.1 200 ")
            assert read_until_closed(kept) == b""
            with pytest.raises(TimeoutError):
                silent.recv(1)  # still open, still waiting for its request
            newcomer.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert read_until_closed(newcomer).startswith(b"HTTP/1.1 200 ")
        time.sleep(0.2)  # the loop has closed the newcomer's connection
        with connect(port) as burst, connect(port) as newcomer:  # 2: the silent one goes
            newcomer.sendall(_GET_HEALTHZ)
            assert read_response(newcomer).startswith(b"HTTP/1.1 200 ")
            silent.settimeout(5)
            assert read_until_closed(silent).startswith(b"HTTP/1.1 503 ")
            burst.sendall(_GET_HEALTHZ)  # it arrived with the newcomer: never cut for it
            assert read_response(burst).startswith(b"HTTP/1.1 200 ")
    assert dropped(endpoints.metrics, "limit") == 1.0


def test_when_every_connection_is_being_answered_only_probes_get_in(
    store: store_module.Store,
) -> None:
    release = threading.Event()

    def readiness() -> tuple[bool, dict[str, Any]]:
        release.wait(30)  # /readyz hangs: its lane holds every connection
        return True, {}

    gauges = metrics.Metrics(lambda: 0)
    probe = http_module.Probe(lambda: True, readiness)
    limits = config.HttpLimits(max_connections=3)
    server = http_module.Server(("127.0.0.1", 0), probe, gauges, store, limits)
    server.start()
    waiting = [connect(server.port) for _ in range(3)]
    try:
        for sock in waiting:
            sock.sendall(_GET_READYZ)
        time.sleep(0.3)
        with connect(server.port) as over:
            over.sendall(_GET_RESOURCES)
            answer = read_until_closed(over)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"Connection: close" in answer
        with connect(server.port) as prober:
            prober.sendall(_GET_HEALTHZ)
            assert read_until_closed(prober).startswith(b"HTTP/1.1 200 ")  # one probe, closed

        reserve = [connect(server.port) for _ in range(16)]
        try:
            for sock in reserve:
                sock.sendall(_GET_READYZ)
            time.sleep(0.3)
            with connect(server.port) as refused:
                assert read_until_closed(refused).startswith(b"HTTP/1.1 503 ")
        finally:
            release.set()
            for sock in reserve:
                sock.close()
        for sock in waiting:
            assert read_response(sock).startswith(b"HTTP/1.1 200 ")
    finally:
        release.set()
        for sock in waiting:
            sock.close()
        server.close()
    assert dropped(gauges, "limit") == 2.0


def test_many_concurrent_clients_are_served_by_a_fixed_set_of_threads(
    serve: Serve,
) -> None:
    endpoints = serve(config.HttpLimits(workers=2))
    threads_before = {t.name for t in threading.enumerate() if t.name.startswith("http")}
    clients = [connect(endpoints.server.port) for _ in range(100)]
    try:
        for sock in clients:
            sock.sendall(_GET_RESOURCES)
        during = {t.name for t in threading.enumerate() if t.name.startswith("http")}
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(read_response, clients))
    finally:
        for sock in clients:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers)
    assert during == threads_before == {
        "http", "http-worker-0", "http-worker-1", "http-healthz", "http-readyz", "http-stream",
    }  # fmt: skip


def test_a_limit_that_could_take_most_file_descriptors_is_refused(
    store: store_module.Store,
) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    probe = http_module.Probe(lambda: True, lambda: (True, {}))
    with pytest.raises(errors.ConfigError, match=r"more than half of the \d+ file descriptors"):
        http_module.Server(
            ("127.0.0.1", 0),
            probe,
            metrics.Metrics(lambda: 0),
            store,
            config.HttpLimits(max_connections=soft),
        )


def test_a_listen_address_that_is_not_loopback_is_refused_without_tls(
    store: store_module.Store,
) -> None:
    probe = http_module.Probe(lambda: True, lambda: (True, {}))
    http_module.Server(("127.0.0.1", 0), probe, metrics.Metrics(lambda: 0), store).close()
    with pytest.raises(errors.ConfigError, match=r"^--listen 0\.0\.0\.0:0 is not a loopback"):
        http_module.Server(("0.0.0.0", 0), probe, metrics.Metrics(lambda: 0), store)


def test_the_standard_client_keeps_one_connection_alive_across_requests(serve: Serve) -> None:
    endpoints = serve(config.HttpLimits())
    conn = http.client.HTTPConnection("127.0.0.1", endpoints.server.port, timeout=5)
    statuses, sockets = [], set()
    try:
        for path in ("/healthz", "/readyz", "/api/v1/resources", "/nope"):
            conn.request("GET", path, headers={"Authorization": f"Bearer {ADMIN_SECRET}"})
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
            sockets.add(conn.sock)
    finally:
        conn.close()
    assert statuses == [200, 503, 200, 404]
    assert len(sockets) == 1


def test_a_client_that_does_not_read_holds_no_worker_and_is_cut_at_the_write_deadline(
    serve: Serve, store: store_module.Store
) -> None:
    store.apply_specs(
        [
            record.SpecWrite(
                key=record.ResourceKey("Template", f"t-{n}"),
                spec={"spec": {"cpus": 1, "memory": "64MiB"}},
                spec_hash=f"h-{n}",
                labels={"padding": "x" * 4096},
                annotations={},
                source_file="t.yaml",
                source_document=n,
                source_revision=None,
            )
            for n in range(2000)
        ]
    )  # /api/v1/resources is now over 8 MB: more than the kernel's buffers take
    endpoints = serve(config.HttpLimits(workers=1, write_timeout=3.0))
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", endpoints.server.port))
    with stalled:
        stalled.sendall(_GET_RESOURCES)
        stalled.settimeout(30)
        assert stalled.recv(1, socket.MSG_PEEK)  # the response is on its way: the worker is done
        with connect(endpoints.server.port) as other:
            started = time.monotonic()
            other.sendall(
                b"GET /api/v1/resources/template/t-1 HTTP/1.1\r\nHost: t\r\n" + _BEARER + b"\r\n"
            )
            assert read_response(other).startswith(b"HTTP/1.1 200 ")
            assert time.monotonic() - started < 1.5  # not after the 3 s the stalled one gets
        time.sleep(3.5)
    assert dropped(endpoints.metrics, "write_timeout") == 1.0


def test_an_ipv6_loopback_listen_address_is_served_without_a_warning(
    store: store_module.Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="reconciler.daemon.http")
    probe = http_module.Probe(lambda: True, lambda: (True, {}))
    server = http_module.Server(("::1", 0), probe, metrics.Metrics(lambda: 0), store)
    server.start()
    try:
        with socket.create_connection(("::1", server.port), timeout=5) as sock:
            sock.sendall(_GET_HEALTHZ)
            assert read_response(sock).endswith(b"\r\n\r\nok\n")
    finally:
        server.close()
    assert not caplog.records


def test_a_handler_that_fails_answers_500_and_its_lane_keeps_serving(
    store: store_module.Store, caplog: pytest.LogCaptureFixture
) -> None:
    def readiness() -> tuple[bool, dict[str, Any]]:
        raise RuntimeError("a bug")

    probe = http_module.Probe(lambda: True, readiness)
    server = http_module.Server(("127.0.0.1", 0), probe, metrics.Metrics(lambda: 0), store)
    server.start()
    try:
        for _ in range(2):
            with connect(server.port) as sock:
                sock.sendall(_GET_READYZ)
                answer = read_until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 500 ")
            assert b"internal error; see the daemon's log" in answer
        assert server.alive
    finally:
        server.close()
    assert "RuntimeError: a bug" in caplog.text


@pytest.fixture
def tls_server(store: store_module.Store, tmp_path: Path) -> Iterator[tuple[int, ssl.SSLContext]]:
    cert, key = tls.self_signed(tmp_path)
    Endpoints(store).server.close()  # grants the admin token
    probe = http_module.Probe(lambda: True, lambda: (True, {}))
    server = http_module.Server(
        ("127.0.0.1", 0),
        probe,
        metrics.Metrics(lambda: 0),
        store,
        config.HttpLimits(header_timeout=1.0),
        tls=http_module.tls_context(str(cert), str(key)),
    )
    server.start()
    try:
        yield server.port, ssl.create_default_context(cafile=str(cert))
    finally:
        server.close()


def test_tls_serves_large_answers_and_keeps_the_connection_alive(
    tls_server: tuple[int, ssl.SSLContext], store: store_module.Store
) -> None:
    store.apply_specs(
        [
            record.SpecWrite(
                key=record.ResourceKey("Template", f"t-{n}"),
                spec={"spec": {"cpus": 1, "memory": "64MiB"}},
                spec_hash=f"h-{n}",
                labels={"padding": "x" * 1024},
                annotations={},
                source_file=None,
                source_document=None,
                source_revision=None,
            )
            for n in range(300)
        ]
    )  # a response of many TLS records
    port, trusted = tls_server
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=trusted)
    try:
        sockets = set()
        for path in ("/healthz", "/api/v1/resources", "/api/v1/resources"):
            conn.request("GET", path, headers={"Authorization": f"Bearer {ADMIN_SECRET}"})
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200
            sockets.add(conn.sock)
        assert len(body) > 300 * 1024 and body.endswith(b"}\n")
        assert len(sockets) == 1
    finally:
        conn.close()


def test_a_stalled_tls_handshake_is_cut_at_the_head_deadline(
    tls_server: tuple[int, ssl.SSLContext],
) -> None:
    port, _ = tls_server
    with connect(port) as stalled:  # connects, never says hello
        started = time.monotonic()
        assert read_until_closed(stalled) == b""  # no plain text to a TLS client
        assert 0.9 < time.monotonic() - started < 3
    with connect(port) as plain:  # not TLS at all: cut at once
        plain.sendall(_GET_HEALTHZ)
        with contextlib.suppress(ConnectionResetError):
            assert b"200" not in read_until_closed(plain)
