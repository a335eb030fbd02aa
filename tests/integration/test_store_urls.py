"""Which database URLs the record accepts and how it reads them (no database needed)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.store import _engine
from reconciler.store.store import Store


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


def test_a_record_left_readable_by_an_older_version_in_the_state_directory_is_tightened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    home = tmp_path / "infinibay"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    old = Store.open()  # creates the record; then loosen it as the old version left it
    old.close()
    for name in ("state.db", "state.db.lock"):
        (home / name).touch()
        (home / name).chmod(0o644)
    home.chmod(0o755)

    Store.open().close()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "state.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "state.db.lock").stat().st_mode) == 0o600


def test_a_record_elsewhere_keeps_the_mode_its_operator_gave_it(tmp_path: Path) -> None:
    database = tmp_path / "shared" / "state.db"
    Store.open(f"sqlite:///{database}").close()
    database.chmod(0o640)
    Store.open(f"sqlite:///{database}").close()
    assert stat.S_IMODE(database.stat().st_mode) == 0o640
