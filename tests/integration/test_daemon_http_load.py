"""The daemon's HTTP server under load, as a real process against the real libvirtd.

A load generator in this process (asyncio, so 250 sockets cost no threads
here) hammers ``/api/v1/resources`` of a real ``infinibay daemon``
subprocess from 200 kept-alive clients while 50 slowloris sockets trickle
their headers, for a few seconds. Meanwhile ``/healthz`` and ``/readyz``
are polled, and a VM is destroyed behind the daemon's back: the probes must
answer within a second, the API must answer every request, and the VM must
be healed within the bound the daemon keeps without load. A second test
opens 1,013 idle connections to a daemon limited to 1,024 descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import resource
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from tests.integration.harness import Harness
from tests.integration.test_daemon import ADMIN_TOKEN, Daemon, dump, running, spawn, until

# Timed against the daemon's reaction bounds: run after the parallel phase, alone (scripts/test).
pytestmark = [pytest.mark.integration, pytest.mark.timing]
__all__ = ["spawn"]  # a fixture shared with test_daemon

_REQUEST = (
    f"GET /api/v1/resources HTTP/1.1\r\nHost: load\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
).encode()
_ANSWER_WITHIN = 15.0  # seconds a load client waits for a response before it calls it lost


@dataclasses.dataclass
class Stats:
    latencies: list[float] = dataclasses.field(default_factory=list)
    statuses: dict[int, int] = dataclasses.field(default_factory=dict)
    lost: list[str] = dataclasses.field(default_factory=list)
    slowloris_cut: int = 0

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(len(ordered) * 0.99)] if ordered else 0.0


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The status of one response and whether the server closes after it."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers.get("connection", "").lower() == "close"


async def _client(port: int, stop: asyncio.Event, stats: Stats) -> None:
    while not stop.is_set():
        writer = None
        try:
            async with asyncio.timeout(_ANSWER_WITHIN):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            while not stop.is_set():
                sent = time.monotonic()
                writer.write(_REQUEST)
                async with asyncio.timeout(_ANSWER_WITHIN):
                    status, closing = await _response(reader)
                stats.latencies.append(time.monotonic() - sent)
                stats.statuses[status] = stats.statuses.get(status, 0) + 1
                if closing:
                    break
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            stats.lost.append(type(exc).__name__)
        finally:
            if writer is not None:
                writer.close()


async def _slowloris(port: int, stop: asyncio.Event, stats: Stats) -> None:
    """A client that never finishes its headers: one more header line every second."""
    while not stop.is_set():
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(b"GET /api/v1/resources HTTP/1.1\r\n")
                n = 0
                while not stop.is_set() and not reader.at_eof():
                    writer.write(f"X-Slow-{n}: y\r\n".encode())
                    await writer.drain()
                    n += 1
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await reader.read(65536)
                stats.slowloris_cut += 1 if reader.at_eof() else 0
            finally:
                writer.close()
        await asyncio.sleep(0.1)


class Load:
    """200 clients and 50 slowloris sockets against ``port``, on a thread of their own."""

    def __init__(self, port: int, clients: int = 200, slowloris: int = 50) -> None:
        self.stats = Stats()
        self._port, self._clients, self._slowloris = port, clients, slowloris
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            tasks = [_client(self._port, self._stop, self.stats) for _ in range(self._clients)]
            tasks += [
                _slowloris(self._port, self._stop, self.stats) for _ in range(self._slowloris)
            ]
            await asyncio.gather(*tasks)

        self._loop.run_until_complete(main())
        self._loop.close()

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(_ANSWER_WITHIN + 10)


@dataclasses.dataclass(frozen=True)
class Answer:
    path: str
    status: int | None  # None: no answer
    seconds: float


class Prober:
    """Polls /healthz and /readyz, one new connection each, as an orchestrator would."""

    def __init__(self, port: int) -> None:
        self.answers: list[Answer] = []
        self._port = port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def _ask(self, path: str) -> Answer:
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self._port}{path}", timeout=5) as r:
                r.read()
                status: int | None = r.status
        except urllib.error.HTTPError as exc:
            with exc:
                exc.read()
                status = exc.code
        except OSError:
            status = None
        return Answer(path, status, time.monotonic() - started)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.answers += [self._ask("/healthz"), self._ask("/readyz")]

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)


def _converged_vm(h: Harness, spawn: Callable[..., Daemon], *args: str) -> Daemon:
    (h.workdir / "all.yaml").write_text(dump(h.pool(), h.network(), h.template(), h.vm("web")))
    daemon = spawn("--source", str(h.workdir), "--interval", "10m", *args)
    until(lambda: running(h, "web"), 120, "the VM runs", daemon)
    until(lambda: daemon.readyz()["ready"], 30, "the daemon is ready", daemon)
    return daemon


def _heal_seconds(h: Harness, daemon: Daemon, bound: float) -> float:
    h.domain("web").destroy()
    destroyed = time.monotonic()
    until(lambda: running(h, "web"), bound, "the destroyed VM runs again", daemon)
    return time.monotonic() - destroyed


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_probes_answer_within_1s_and_drift_heals_within_10s_under_200_clients_and_slowloris(
    h: Harness, spawn: Callable[..., Daemon]
) -> None:
    daemon = _converged_vm(h, spawn)
    with Load(daemon.port) as load, Prober(daemon.port) as prober:
        time.sleep(2)  # every client connected and hammering
        healed = _heal_seconds(h, daemon, 10)
        time.sleep(max(0.0, 4 - healed))
    assert healed < 10

    stats = load.stats
    summary = (
        f"{len(stats.latencies)} answers {stats.statuses}, p99 {stats.p99():.2f}s, "
        f"lost {stats.lost[:5]}, slowloris cut {stats.slowloris_cut}"
    )
    assert len(stats.latencies) >= 400, summary  # the API really was hammered
    assert stats.statuses.get(200, 0) >= 0.9 * len(stats.latencies), summary
    assert not stats.lost, summary  # every request was answered, none timed out
    assert max(stats.latencies) < 10, summary

    late = [a for a in prober.answers if a.status is None or a.seconds >= 1.0]
    assert len(prober.answers) >= 20 and not late, late
    assert {a.status for a in prober.answers if a.path == "/healthz"} == {200}
    assert daemon.http("/healthz") == (200, "ok\n")
    assert daemon.terminate() == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_1013_idle_connections_cannot_exhaust_descriptors_and_a_destroy_still_heals(
    h: Harness, spawn: Callable[..., Daemon]
) -> None:
    daemon = _converged_vm(h, spawn)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.prlimit(daemon.proc.pid, resource.RLIMIT_NOFILE, (1024, hard))  # systemd's default
    idle = [socket.create_connection(("127.0.0.1", daemon.port), timeout=10) for _ in range(1013)]
    try:
        time.sleep(1)  # the daemon has accepted, held or refused every one of them
        descriptors = len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))
        assert descriptors < 512, f"{descriptors} descriptors open"
        assert until(lambda: daemon.answering(), 5, "/healthz answers", daemon)
        assert _heal_seconds(h, daemon, 10) < 10  # the daemon's bound without load
        assert daemon.http("/healthz") == (200, "ok\n")
    finally:
        for sock in idle:
            sock.close()
    assert daemon.terminate() == 0
