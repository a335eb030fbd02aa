"""Leases on the real databases: renewal, expiry, one epoch counter, fenced writes.

PostgreSQL: the writer lock and the leadership are lease rows kept by a
session advisory lock (``reconciler.store._locks``). The leases are driven
directly here (no heartbeat), so a test decides when one is renewed and when
it is left to expire; a holder frozen with SIGSTOP is a real subprocess.
SQLite keeps its flocks: nothing can take them from a live holder, so there
is nothing to fence and no epoch is recorded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from reconciler import errors
from reconciler.models import record
from reconciler.store import Store, _engine, _locks
from tests.fixtures import database

pytestmark = pytest.mark.integration

postgres_only = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    Store.open(db_url).close()  # the schema
    created = _engine.create(_engine.normalise(db_url))
    try:
        yield created
    finally:
        created.dispose()


def _row(engine: sa.Engine, name: str) -> sa.Row[int, int, bool]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT epoch, pid, expires_at > now() AS unexpired FROM writer_lock "
                "WHERE name = :name"
            ),
            {"name": name},
        ).one()


@postgres_only
def test_a_lease_nobody_renews_lapses_here_then_expires_and_goes_to_the_next_epoch(
    engine: sa.Engine,
) -> None:
    first = _locks.writer_lease(engine, None, 1.0)
    second = _locks.writer_lease(engine, None, 1.0)
    try:
        first.acquire(0)
        assert first.epoch == 1 and first.stale() is None
        with pytest.raises(errors.LockTimeout, match=f"locked by pid {os.getpid()} on host"):
            second.acquire(0)  # held and unexpired: its live holder's session keeps it

        time.sleep(1.1)  # no renewal: the holder knows without asking anyone
        assert (first.stale() or "").startswith("lapsed: not renewed for")

        started = time.monotonic()
        second.acquire(5)  # expired: the stale session is terminated and the row taken
        assert time.monotonic() - started < 4
        assert second.epoch == 2 and second.stale() is None
        assert tuple(_row(engine, "writer")) == (2, os.getpid(), True)

        assert first.renew() is False  # a lapse is final: never revived
        assert (first.stale() or "").startswith("lapsed")
    finally:
        first.close()
        second.close()


@postgres_only
def test_a_session_ended_while_the_server_stays_up_loses_the_lease_and_frees_it_at_once(
    engine: sa.Engine,
) -> None:
    holder = _locks.leader_lease(engine, None, 30.0)
    other = _locks.leader_lease(engine, None, 30.0)
    try:
        holder.acquire(0)
        with engine.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(backend) FROM writer_lock WHERE name = 'leader'"
                )
            )
        assert holder.renew() is False
        assert holder.stale() == "lost its session while the server stayed up"
        other.acquire(0)  # freed by the loser: no waiting out the 30 s lease
        assert other.epoch == 2
    finally:
        holder.close()
        other.close()


def test_a_server_restart_keeps_a_lease_that_did_not_lapse(
    private_postgres: database.PostgresServer,
) -> None:
    url = sa.make_url(private_postgres.url).render_as_string(hide_password=False)
    Store.open(url).close()  # the schema
    engine = _engine.create(_engine.normalise(url))
    holder = _locks.writer_lease(engine, None, 30.0)
    other = _locks.writer_lease(engine, None, 30.0)
    try:
        holder.acquire(0)
        private_postgres.stop("fast")
        assert holder.renew() is False  # unreachable: not renewed, not lost either
        assert holder.stale() is None
        private_postgres.start()
        assert holder.renew() is True  # a new session, the same hold
        assert holder.epoch == 1 and holder.stale() is None
        with pytest.raises(errors.LockTimeout, match=f"locked by pid {os.getpid()}"):
            other.acquire(0.3)
        started = time.monotonic()
        holder.release()
        other.acquire(5)
        assert other.epoch == 2 and time.monotonic() - started < 3
    finally:
        holder.close()
        other.close()
        engine.dispose()


@postgres_only
def test_renewals_keep_the_lease_and_one_that_finds_another_epoch_loses_it(
    engine: sa.Engine,
) -> None:
    holder = _locks.writer_lease(engine, None, 1.5)
    other = _locks.writer_lease(engine, None, 1.5)
    try:
        holder.acquire(0)
        for _ in range(7):  # 2.1 s: longer than the lease, renewed all along
            time.sleep(0.3)
            assert holder.renew() is True
            assert holder.stale() is None
        with pytest.raises(errors.LockTimeout):
            other.acquire(0.2)

        with engine.begin() as conn:  # another holder's epoch, as a take-over writes it
            conn.execute(sa.text("UPDATE writer_lock SET epoch = epoch + 1 WHERE name = 'writer'"))
        assert holder.renew() is False
        assert holder.stale() == "was taken over"
    finally:
        holder.close()
        other.close()


@postgres_only
def test_the_writer_lock_and_the_leadership_draw_epochs_from_one_counter(
    engine: sa.Engine,
) -> None:
    writer = _locks.writer_lease(engine, None, 5.0)
    leader = _locks.leader_lease(engine, None, 5.0)
    try:
        writer.acquire(0)
        leader.acquire(0)
        assert (writer.epoch, leader.epoch) == (1, 2)
        writer.release()
        assert writer.epoch is None
        assert _row(engine, "writer").epoch == 1  # released, never deleted: no going back
        writer.acquire(0)
        assert writer.epoch == 3
        fence = _locks.Fence.of(writer, leader)
        assert fence.epoch == 3 and fence.epochs() == {"writer": 3, "leader": 2}
        fence.check()
        leader.release()
        with pytest.raises(errors.Fenced, match=r"leadership \(epoch 2\) was given up"):
            fence.check()
    finally:
        writer.close()
        leader.close()


_FROZEN_HOLDER = """
import sys
from reconciler import errors
from reconciler.models import record
from reconciler.store import Store

store = Store.open(sys.argv[1], lease=2)
with store.writer_lock(timeout=30):
    run = store.start_run(record.Trigger.APPLY, None)
    print("locked", run, flush=True)
    sys.stdin.readline()  # frozen and thawed meanwhile
    try:
        store.record_events([record.NewEvent(
            key=record.ResourceKey("Template", "frozen"), type=record.EventType.NORMAL,
            reason="Updated", message="written by the frozen holder")])
        print("wrote", flush=True)
    except errors.Fenced as exc:
        print("write refused:", exc, flush=True)
    try:
        store.fence().check()
        print("may act", flush=True)
    except errors.Fenced as exc:
        print("act refused:", exc, flush=True)
store.close()
"""


@postgres_only
def test_a_stopped_holder_loses_the_writer_lock_within_its_lease_and_writes_nothing_after(
    db_url: str,
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _FROZEN_HOLDER, db_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        words = holder.stdout.readline().split()
        assert words[:1] == ["locked"], holder.communicate(timeout=30)
        frozen_run = int(words[1])
        holder.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        with Store.open(db_url, lease=2) as store, store.writer_lock(timeout=15):
            assert time.monotonic() - stopped < 2 + 3  # within the lease, and a little
            store.record_events(
                [
                    record.NewEvent(
                        key=record.ResourceKey("Template", "fresh"),
                        type=record.EventType.NORMAL,
                        reason="Created",
                        message="written by the new holder",
                    )
                ]
            )
            store.fence().check()
            holder.send_signal(signal.SIGCONT)
            holder.stdin.write("\n")
            holder.stdin.flush()
            said = [holder.stdout.readline().strip() for _ in range(2)]
            assert said[0].startswith("write refused: this reconciler's writer lock (epoch"), said
            assert said[1].startswith("act refused: this reconciler's writer lock"), said
            assert "lapsed" in said[1] or "lost its session" in said[1] or "taken" in said[1]
            events = {e.key.name: e for e in store.events()}
            assert set(events) == {"fresh"}
        assert holder.wait(timeout=30) == 0, holder.communicate()
        with Store.open(db_url) as store:
            run = next(r for r in store.runs() if r.id == frozen_run)
            assert run.result is None  # never closed by the frozen holder
    finally:
        if holder.poll() is None:
            holder.send_signal(signal.SIGCONT)
            holder.kill()
        holder.communicate(timeout=30)


def test_runs_and_events_carry_the_epoch_they_were_written_under(db_url: str) -> None:
    with Store.open(db_url) as store:
        with store.writer_lock(timeout=5):
            run_id = store.start_run(record.Trigger.APPLY, None)
            store.record_events(
                [
                    record.NewEvent(
                        key=record.ResourceKey("Template", "t"),
                        type=record.EventType.NORMAL,
                        reason="Created",
                        message="created",
                        run_id=run_id,
                    )
                ]
            )
            fence = store.fence()
            fence.check()  # SQLite: always valid; PostgreSQL: valid while renewed
            store.finish_run(run_id, {}, "succeeded")
        engine = _engine.create(_engine.normalise(db_url))
        try:
            with engine.connect() as conn:
                run_epoch = conn.execute(sa.text("SELECT epoch FROM runs")).scalar_one()
                event_epoch = conn.execute(sa.text("SELECT epoch FROM events")).scalar_one()
        finally:
            engine.dispose()
    if store.backend == "sqlite":
        assert fence.holds == () and fence.epoch is None
        assert (run_epoch, event_epoch) == (None, None)
    else:
        assert fence.epoch == 1
        assert (run_epoch, event_epoch) == (1, 1)
