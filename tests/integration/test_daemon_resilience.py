"""The daemon never stops silently: hostile input, exhausted descriptors, a cut libvirt socket.

Real ``infinibay daemon`` subprocesses against the real libvirtd (see
``test_daemon`` for how they are started and probed). Each test ends by
proving the daemon still heals: a managed VM destroyed with libvirt is
running again within seconds. Faults come from outside the process — a
manifest, a burst of idle connections with ``prlimit`` lowering the
descriptor limit, a socat proxy that is killed — except the dead thread,
which is injected into the real process (``python -c``) because nothing
outside can kill one of its threads.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.models import record
from reconciler.store import store as store_module
from tests.fixtures import database
from tests.fixtures.proxy import LibvirtProxy
from tests.integration.harness import Harness, doc
from tests.integration.test_daemon import Daemon, dump, running, template_doc, until

# Timed against the daemon's reaction bounds: run after the parallel phase, alone (scripts/test).
pytestmark = [pytest.mark.integration, pytest.mark.timing]


@pytest.fixture
def start(db_url: str, libvirt_cleanup: None, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Like ``test_daemon``'s ``spawn``, with the libvirt URI and the entry to choose."""
    started: list[Daemon] = []

    def launch(uri: str, *args: str, entry: tuple[str, ...] = ("-m", "reconciler")) -> Daemon:
        daemon = Daemon(db_url, uri, tmp_path / f"daemon-{len(started)}.log", *args, entry=entry)
        started.append(daemon)
        return daemon

    yield launch
    for daemon in started:
        try:
            daemon.terminate(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()


def converged_vm(h: Harness, daemon: Daemon) -> None:
    until(lambda: running(h, "web"), 120, "the VM runs", daemon)
    until(lambda: daemon.readyz()["ready"], 60, "the daemon is ready", daemon)


def healed_within(h: Harness, daemon: Daemon, seconds: float = 10) -> None:
    """Destroy the managed VM behind the daemon's back; it must run again in time.

    The issue asks for 5 s, which an idle host meets (1-3 s); 10 s, the budget of
    ``test_daemon``'s own destroy test, because starting the guest alone takes up
    to 6 s on a loaded CI host.
    """
    h.domain("web").destroy()
    destroyed = time.monotonic()
    until(lambda: running(h, "web"), seconds, "the destroyed VM runs again", daemon)
    assert time.monotonic() - destroyed < seconds


def refused(daemon: Daemon) -> str | None:
    found: str | None = daemon.readyz().get("source", {}).get("refusedRevision")
    return found


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_runner_survives_a_nul_byte_deep_nesting_and_exhausted_descriptors(
    h: Harness, start: Callable[..., Daemon], libvirt_uri: str
) -> None:
    source = h.workdir
    (source / "all.yaml").write_text(dump(h.pool(), h.network(), h.template(), h.vm("web")))
    daemon = start(libvirt_uri, "--source", str(source), "--interval", "10m", "--debounce", "200ms")
    converged_vm(h, daemon)

    bad = source / "bad.yaml"
    for hostile in ("kind: Template\nmetadata: {name: x}\0\n", "[" * 100_000):
        bad.write_text(hostile)
        until(lambda: refused(daemon), 30, "the hostile revision is refused", daemon)
        assert daemon.http("/healthz") == (200, "ok\n")
        healed_within(h, daemon)  # the last good revision stays in force meanwhile
        bad.unlink()
        until(lambda: refused(daemon) is None, 30, "the source is valid again", daemon)

    # Exhaust its descriptors: idle connections hold what they can, then the limit
    # drops to what is open, so the pass that SIGHUP asks for cannot open anything.
    fds = Path(f"/proc/{daemon.proc.pid}/fd")
    limits = resource.prlimit(daemon.proc.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(
        daemon.proc.pid, resource.RLIMIT_NOFILE, (len(list(fds.iterdir())) + 40, limits[1])
    )
    idle: list[socket.socket] = []
    try:
        for _ in range(200):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(1)
            idle.append(sock)
            try:
                sock.connect(("127.0.0.1", daemon.port))
            except OSError:
                break  # the listen backlog is full: nothing more gets in
        time.sleep(1)
        open_now = len(list(fds.iterdir()))
        resource.prlimit(daemon.proc.pid, resource.RLIMIT_NOFILE, (open_now, limits[1]))
        daemon.proc.send_signal(signal.SIGHUP)
        until(lambda: "Too many open files" in daemon.log.read_text(), 30, "EMFILE", daemon)
        time.sleep(2)  # the retries fail too
        assert daemon.proc.poll() is None
    finally:
        for sock in idle:
            sock.close()
        with contextlib.suppress(ProcessLookupError):
            resource.prlimit(daemon.proc.pid, resource.RLIMIT_NOFILE, limits)
    until(lambda: daemon.http("/healthz") == (200, "ok\n"), 30, "healthy again", daemon)
    healed_within(h, daemon)
    assert daemon.terminate() == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_cut_libvirt_socket_is_reported_after_unhealthy_after_and_reopened(
    h: Harness, start: Callable[..., Daemon]
) -> None:
    proxy = LibvirtProxy()
    proxy.restore()
    try:
        source = h.workdir
        (source / "all.yaml").write_text(dump(h.pool(), h.network(), h.template(), h.vm("web")))
        daemon = start(
            proxy.uri, "--source", str(source), "--interval", "10m", "--unhealthy-after", "5s"
        )
        converged_vm(h, daemon)
        assert daemon.http("/healthz") == (200, "ok\n")

        cut = time.monotonic()
        proxy.cut()
        time.sleep(3)
        assert daemon.http("/healthz")[0] == 200  # a short outage is ridden out
        until(lambda: daemon.http("/healthz")[0] == 503, 10, "healthz shows the outage", daemon)
        assert time.monotonic() - cut > 5
        problems = daemon.readyz()["problems"]
        assert any(p.startswith("libvirt unreachable") for p in problems), problems
        time.sleep(max(0.0, 15 - (time.monotonic() - cut)))

        proxy.restore()
        restored = time.monotonic()
        healed_within(h, daemon)
        assert time.monotonic() - restored < 10
        until(lambda: daemon.http("/healthz") == (200, "ok\n"), 10, "healthy again", daemon)
        assert daemon.terminate() == 0
    finally:
        proxy.close()
    messages = [line["message"] for line in daemon.lines()]
    assert any(m.startswith("reconnected to qemu+unix:///system?socket=") for m in messages)


def test_a_record_outage_turns_healthz_503_only_after_unhealthy_after(
    private_postgres: database.PostgresServer, libvirt_uri: str, tmp_path: Path, prefix: str
) -> None:
    source = tmp_path / "manifests"
    source.mkdir()
    (source / "a.yaml").write_text(
        dump(doc("Template", f"{prefix}a", {"cpus": 1, "memory": "64MiB"}))
    )
    url = private_postgres.url
    args = (
        "--source",
        str(source),
        "--interval",
        "10m",
        "--lease",
        "3s",
        "--unhealthy-after",
        "4s",
    )
    daemon = Daemon(url, libvirt_uri, tmp_path / "daemon.log", *args)
    try:
        until(lambda: daemon.answering() and daemon.readyz()["ready"], 60, "ready", daemon)
        stopped = time.monotonic()  # before the stop: the outage begins as it runs
        private_postgres.stop("fast")
        time.sleep(2)
        assert daemon.http("/healthz") == (200, "ok\n")  # a short outage is ridden out
        until(lambda: daemon.http("/healthz")[0] == 503, 15, "healthz shows the outage", daemon)
        assert time.monotonic() - stopped > 4
        problems = daemon.readyz()["problems"]
        assert any(p.startswith("the record unreachable") for p in problems), problems

        private_postgres.start()
        until(lambda: daemon.http("/healthz") == (200, "ok\n"), 30, "healthy again", daemon)
        (source / "b.yaml").write_text(
            dump(doc("Template", f"{prefix}b", {"cpus": 1, "memory": "64MiB"}))
        )

        def recorded() -> bool:
            with store_module.Store.open(url) as store:
                return store.get(record.ResourceKey("Template", f"{prefix}b")) is not None

        until(recorded, 30, "the daemon reconciles again", daemon)
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


# The fault: once the file named by argv[1] exists, the resync timer raises; while
# the file named by argv[2] exists, a pass holds (a long pass in flight, such as
# one waiting out an ACPI shutdown) after saying so in the file named by argv[3].
_INJECT_FAULT = """
import pathlib, sys, time
from reconciler.cli import main
from reconciler.daemon import daemon, loop

die, hold, holding = (pathlib.Path(sys.argv.pop(1)) for _ in range(3))

def resync_timer(self):
    while not die.exists():
        if self.stopping.wait(0.05):
            return
    raise RuntimeError("injected: the resync timer broke")

process = loop.Loop.process

def held(self, items):
    if hold.exists():
        holding.touch()
        while hold.exists():
            time.sleep(0.05)
    process(self, items)

daemon.Daemon._resync_timer = resync_timer
loop.Loop.process = held
main.main()
"""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_dead_thread_turns_the_probes_503_then_the_daemon_exits_non_zero(
    h: Harness, start: Callable[..., Daemon], libvirt_uri: str, tmp_path: Path
) -> None:
    die, hold, holding = tmp_path / "die", tmp_path / "hold", tmp_path / "holding"
    source = h.workdir
    (source / "a.yaml").write_text(dump(template_doc(h, "a")))
    entry = ("-c", _INJECT_FAULT, str(die), str(hold), str(holding))
    daemon = start(libvirt_uri, "--source", str(source), "--interval", "10m", entry=entry)
    until(lambda: daemon.answering() and daemon.readyz()["ready"], 60, "ready", daemon)

    hold.touch()
    daemon.proc.send_signal(signal.SIGHUP)
    until(holding.exists, 30, "a pass in flight", daemon)
    die.touch()
    until(lambda: daemon.http("/healthz")[0] == 503, 10, "healthz says 503", daemon)
    ready = daemon.readyz()
    assert ready["ready"] is False
    assert any("the resync thread died (RuntimeError)" in p for p in ready["problems"])
    assert daemon.proc.poll() is None  # still draining the pass in flight

    hold.unlink()
    assert daemon.proc.wait(60) == 1
    log = daemon.log.read_text()
    assert "Traceback" in log and "RuntimeError: injected: the resync timer broke" in log
    assert "error: the resync thread died (RuntimeError); the daemon stopped" in log
    with h.store() as store:
        assert store.leader() is None  # resigned: a standby may lead at once
