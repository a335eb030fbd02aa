"""Fenced leadership between real daemons on the real PostgreSQL and libvirtd (SPEC §5).

Two ``infinibay daemon`` processes share one record. The leader is caught in
the middle of a pass that waits out the ACPI shutdown of a guest that sits in
firmware and ignores it; then either the leader is frozen (SIGSTOP) past its
lease, or the PostgreSQL server is restarted under it. Meanwhile the VM is
declared ``Running`` again. What must hold, read from libvirt and the tables:

* a standby (or the restarted leader) leads within the lease;
* the old pass never forces the VM off: same domain id, still running, long
  after its shutdown timeout ran out;
* its run is not recorded ``succeeded``, and a thawed leader writes no run or
  event row under its old epoch once the new leader has written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import sqlalchemy as sa

from tests.fixtures import database
from tests.integration.harness import Harness
from tests.integration.test_daemon import Daemon, dump, running, until

# Timed against leases and shutdown waits: run after the parallel phase, alone (scripts/test).
pytestmark = [pytest.mark.integration, pytest.mark.timing]

LEASE = 4.0


@pytest.fixture
def daemons(
    libvirt_uri: str, libvirt_cleanup: None, tmp_path: Path
) -> Iterator[Callable[..., Daemon]]:
    """Start daemons on a harness's record; all are thawed and stopped before the clean-up."""
    started: list[Daemon] = []

    def start(h: Harness, *args: str) -> Daemon:
        daemon = Daemon(h.db_url, libvirt_uri, tmp_path / f"daemon-{len(started)}.log", *args)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        with contextlib.suppress(ProcessLookupError):
            daemon.proc.send_signal(signal.SIGCONT)
        try:
            daemon.terminate(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()


def probe(daemon: Daemon) -> dict[str, Any]:
    """``/readyz`` as it answers; ``{}`` while it does not (or only with an error)."""
    try:
        status, body = daemon.http("/readyz")
    except OSError:
        return {}
    document: dict[str, Any] = json.loads(body)
    if "ready" in document:
        assert document["ready"] is (status == 200)
    return document


def rows(h: Harness, query: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(h.db_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(sa.text(query))]
    finally:
        engine.dispose()


def runs(h: Harness) -> list[dict[str, Any]]:
    return rows(h, "SELECT id, started_at, finished_at, result, epoch FROM runs ORDER BY id")


def events(h: Harness) -> list[dict[str, Any]]:
    return rows(
        h,
        "SELECT id, kind, name, reason, count, last_seen, epoch FROM events ORDER BY id",
    )


def leader_epoch(h: Harness) -> int:
    (row,) = rows(h, "SELECT epoch FROM writer_lock WHERE name = 'leader'")
    return int(row["epoch"])


def open_run_after(h: Harness, last: int) -> int | None:
    found = [r["id"] for r in runs(h) if r["id"] > last and r["finished_at"] is None]
    return found[0] if found else None


class Scene:
    """The manifests of these tests: a VM ``stuck`` whose power state flips, and ``keep``."""

    def __init__(self, h: Harness) -> None:
        self.h = h

    def declare(self, stuck: str) -> None:
        h = self.h
        documents = [
            h.pool(),
            h.network(),
            h.template(),
            h.vm("keep"),
            h.vm("stuck", powerState=stuck),
        ]
        (h.workdir / "all.yaml").write_text(dump(*documents))

    def args(self, shutdown_timeout: float) -> tuple[str, ...]:
        return (
            "--source", str(self.h.workdir), "--interval", "10m", "--lease", f"{LEASE:g}s",
            "--shutdown-timeout", f"{shutdown_timeout:g}s", "--debounce", "200ms",
        )  # fmt: skip

    def start_pair(
        self, daemons: Callable[..., Daemon], shutdown_timeout: float
    ) -> tuple[Daemon, Daemon]:
        h = self.h
        self.declare("Running")
        leader = daemons(h, *self.args(shutdown_timeout))
        until(lambda: running(h, "keep") and running(h, "stuck"), 120, "both VMs run", leader)
        until(lambda: probe(leader).get("ready"), 60, "the leader is ready", leader)
        standby = daemons(h, *self.args(shutdown_timeout))
        until(
            lambda: (p := probe(standby)).get("role") == "standby" and p.get("ready"),
            60,
            "the standby is ready",
            standby,
        )
        return leader, standby

    def leader_waits_on_a_shutdown(self, leader: Daemon) -> int:
        """Declare ``stuck`` Stopped; returns the leader's run once it waits on the guest."""
        h = self.h
        until(lambda: open_run_after(h, 0) is None, 60, "no pass in flight", leader)
        last = max((r["id"] for r in runs(h)), default=0)
        self.declare("Stopped")

        def waiting() -> int | None:
            """A pass still open 1 s after it began: the one waiting on the guest. A pass
            that began just before the change was seen (on a loaded host, say) ends at
            once and is passed over."""
            run = open_run_after(h, last)
            if run is None:
                return None
            time.sleep(1.0)  # the pass asks for the ACPI shutdown at once, then waits
            still = [r for r in runs(h) if r["id"] == run and r["finished_at"] is None]
            return run if still else None

        run = until(waiting, 30, "the leader's pass waits on the guest", leader)
        assert run is not None  # until returns only what is truthy
        assert running(h, "stuck")
        return run


@pytest.fixture
def on_private_postgres(
    private_postgres: database.PostgresServer,
    libvirt_uri: str,
    libvirt_conn: libvirt.virConnect,
    prefix: str,
    pool_dir: Path,
    tmp_path: Path,
) -> Harness:
    """The harness on a record in a PostgreSQL server of this test's own, to restart."""
    name = f"ib_fence_{uuid.uuid4().hex[:8]}"
    admin = database.admin_engine(private_postgres.url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    workdir = tmp_path / "manifests"
    workdir.mkdir()
    url = sa.make_url(private_postgres.url).set(database=name)
    return Harness(
        prefix,
        url.render_as_string(hide_password=False),
        libvirt_uri,
        libvirt_conn,
        pool_dir,
        workdir,
    )


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_frozen_leader_is_fenced_the_standby_leads_and_the_thawed_one_does_nothing(
    h: Harness, daemons: Callable[..., Daemon]
) -> None:
    scene = Scene(h)
    shutdown_timeout = 10.0
    old, new = scene.start_pair(daemons, shutdown_timeout)
    stuck_id = h.domain("stuck").ID()
    old_run = scene.leader_waits_on_a_shutdown(old)

    old.proc.send_signal(signal.SIGSTOP)
    frozen = time.monotonic()
    scene.declare("Running")  # what the new leader finds declared
    until(lambda: probe(new).get("role") == "leader", LEASE + 5, "the standby leads", new)
    assert time.monotonic() - frozen < LEASE + 5
    epoch = leader_epoch(h)

    # The new leader acts: a VM destroyed out of band runs again.
    until(lambda: probe(new).get("ready"), 60, "the new leader's first pass converges", new)
    h.domain("keep").destroy()
    until(lambda: running(h, "keep"), 20, "the new leader restarts the destroyed VM", new)
    until(lambda: probe(new).get("ready"), 30, "the new leader is ready again", new)
    keep_id = h.domain("keep").ID()
    stuck_xml = h.domain("stuck").XMLDesc(0)
    old_runs = [r for r in runs(h) if r["epoch"] < epoch]
    old_events = [e for e in events(h) if e["epoch"] < epoch]
    assert any(r["id"] == old_run for r in old_runs)

    # Thaw only once the old pass's shutdown timeout ran out: it would force off at once.
    time.sleep(max(0.0, frozen + shutdown_timeout + 1 - time.monotonic()))
    old.proc.send_signal(signal.SIGCONT)
    first = until(lambda: probe(old), 10, "the thawed daemon answers", old)
    assert first["role"] == "fenced" and first["ready"] is False, first
    assert first["fenced"]
    time.sleep(LEASE + 1)  # ample time for the thawed pass, its heartbeat and its ticks

    assert running(h, "stuck"), "the thawed pass forced off a VM declared Running"
    assert h.domain("stuck").ID() == stuck_id
    assert h.domain("stuck").XMLDesc(0) == stuck_xml
    assert h.domain("keep").ID() == keep_id
    assert [r for r in runs(h) if r["epoch"] < epoch] == old_runs  # no run written, none closed
    assert [e for e in events(h) if e["epoch"] < epoch] == old_events  # nor any event
    (closed,) = [r for r in runs(h) if r["id"] == old_run]
    assert closed["result"] == "aborted"  # by the new leader; never "succeeded"
    new_first = min(r["started_at"] for r in runs(h) if r["epoch"] >= epoch)
    assert all(e["last_seen"] < new_first for e in old_events)
    assert all(r["started_at"] < new_first for r in old_runs)
    messages = [line.get("message", "") for line in old.lines()]
    assert any(m.startswith("fenced:") for m in messages), old.tail()

    until(lambda: probe(old).get("role") == "standby", LEASE + 5, "the old one stands by", old)
    assert probe(new)["role"] == "leader"
    assert old.terminate() == 0
    assert new.terminate() == 0


def test_a_postgres_restart_during_a_shutdown_wait_fences_the_pass_and_never_forces_the_vm_off(
    on_private_postgres: Harness,
    private_postgres: database.PostgresServer,
    daemons: Callable[..., Daemon],
) -> None:
    h = on_private_postgres
    scene = Scene(h)
    shutdown_timeout = 15.0
    first, second = scene.start_pair(daemons, shutdown_timeout)
    stuck_id = h.domain("stuck").ID()
    old_run = scene.leader_waits_on_a_shutdown(first)
    waiting = time.monotonic()

    private_postgres.stop("fast")  # every session ends
    scene.declare("Running")
    time.sleep(LEASE + 2)  # longer than the lease: it lapses under the waiting pass
    private_postgres.start()

    def someone_leads_and_converged() -> bool:
        return any(
            (p := probe(d)).get("role") == "leader" and bool(p.get("ready"))
            for d in (first, second)
        )

    until(someone_leads_and_converged, 60, "a daemon leads again and converges", second)
    until(
        lambda: any(r["id"] == old_run and r["finished_at"] for r in runs(h)),
        30,
        "the old pass's run is closed",
        first,
    )
    time.sleep(max(0.0, waiting + shutdown_timeout + 2 - time.monotonic()))

    assert running(h, "stuck"), "the old pass forced off a VM declared Running"
    assert h.domain("stuck").ID() == stuck_id
    (closed,) = [r for r in runs(h) if r["id"] == old_run]
    assert closed["result"] in ("fenced", "aborted"), closed
    stuck = h.name("stuck")
    assert not [e for e in events(h) if e["name"] == stuck and e["reason"] == "Stopped"]
    assert any(line.get("message", "").startswith("fenced:") for line in first.lines())
    assert first.proc.poll() is None and second.proc.poll() is None
    assert first.terminate() == 0
    assert second.terminate() == 0
    assert isinstance(closed["finished_at"], dt.datetime)
