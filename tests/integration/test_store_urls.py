"""Which database URLs the record accepts and how it reads them (no database needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import errors
from reconciler.store import _engine


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@h/db",
        "postgres://u:p@h/db",
        "postgresql+psycopg://u:p@h/db",
    ],
)
def test_postgres_urls_use_psycopg_3(url: str) -> None:
    parsed = _engine.normalise(url)
    assert parsed.drivername == "postgresql+psycopg"
    assert (parsed.username, parsed.password, parsed.host, parsed.database) == ("u", "p", "h", "db")


@pytest.mark.parametrize(
    "url", ["mysql://root:topsecret@h/db", "postgresql+asyncpg://u:topsecret@h/db", "nonsense"]
)
def test_other_urls_are_refused_without_showing_the_password(url: str) -> None:
    with pytest.raises(errors.ConfigError, match="sqlite:///PATH") as caught:
        _engine.normalise(url)
    assert "topsecret" not in str(caught.value)


def test_sqlite_file_url_names_its_file_and_memory_has_none(tmp_path: Path) -> None:
    assert _engine.sqlite_path(_engine.normalise(f"sqlite:///{tmp_path}/a.db")) == tmp_path / "a.db"
    assert _engine.sqlite_path(_engine.normalise("sqlite://")) is None
    assert _engine.sqlite_path(_engine.normalise("sqlite:///:memory:")) is None
    assert _engine.sqlite_path(_engine.normalise("postgresql://h/db")) is None


def test_opening_a_sqlite_file_creates_its_directory_and_uses_wal(tmp_path: Path) -> None:
    url = _engine.normalise(f"sqlite:///{tmp_path}/deep/er/state.db")
    engine = _engine.create(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert (conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) > 0
    finally:
        engine.dispose()
    assert (tmp_path / "deep" / "er" / "state.db").is_file()
