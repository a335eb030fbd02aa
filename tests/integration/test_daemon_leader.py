"""Daemon leadership on a real PostgreSQL: exclusive, handed over, and lost with the session.

In-process, with two stores on one database standing for two daemons; the
kill -9 take-over between real processes is in ``test_daemon``.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from reconciler.daemon import leader
from reconciler.store import store as store_module

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_one_leader_at_a_time_and_a_standby_takes_over_when_it_resigns(db_url: str) -> None:
    with store_module.Store.open(db_url) as a, store_module.Store.open(db_url) as b:
        first, second = leader.Leadership(a, lease=1), leader.Leadership(b, lease=1)
        assert first.claim() is True
        assert second.claim() is False  # PostgreSQL: stand by, do not refuse
        assert second.tick() is None and not second.leading.is_set()
        assert first.tick() is None and first.leading.is_set()
        assert "pid" in (b.leader() or "")

        first.resign()
        assert second.tick() is True
        assert second.leading.is_set() and second.healthy
        assert first.tick() is None and not first.leading.is_set()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_leader_whose_session_is_killed_steps_down_and_another_leads(db_url: str) -> None:
    with store_module.Store.open(db_url) as a, store_module.Store.open(db_url) as b:
        first, second = leader.Leadership(a, lease=1), leader.Leadership(b, lease=1)
        assert first.claim()
        admin = sa.create_engine(db_url, poolclass=sa.NullPool)
        try:
            with admin.connect() as conn:
                killed = conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks "
                        "WHERE locktype = 'advisory' AND granted AND database = "
                        "(SELECT oid FROM pg_database WHERE datname = current_database())"
                    )
                ).all()
        finally:
            admin.dispose()
        assert killed
        assert first.tick() is False  # noticed: must stop reconciling
        assert not first.leading.is_set()
        assert second.tick() is True
