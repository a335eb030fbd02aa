"""Schema migrations on both backends: empty databases upgrade, models match migrations.

``alembic check`` here is the CI gate that models and migrations never disagree:
it autogenerates against a database at head and fails on any difference.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner

from reconciler import errors
from reconciler.cli import main
from reconciler.store import Store, _engine, _migrate, schema_state, upgrade_schema

pytestmark = pytest.mark.integration

TABLES = {"resources", "revisions", "events", "runs", "installation", "writer_lock", "tokens"}
REPO = Path(__file__).resolve().parents[2]


def _tables(url: str) -> set[str]:
    engine = _engine.create(_engine.normalise(url))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_opening_an_empty_database_creates_the_schema_at_head(db_url: str) -> None:
    before = schema_state(db_url)
    assert before.current is None and not before.up_to_date

    Store.open(db_url).close()

    assert _tables(db_url) >= TABLES
    after = schema_state(db_url)
    assert after.up_to_date and after.current == after.head


def test_models_and_migrations_agree_alembic_check(db_url: str) -> None:
    upgrade_schema(db_url)
    engine = _engine.create(_engine.normalise(db_url))
    try:
        with engine.connect() as conn:
            command.check(_migrate.alembic_config(conn))  # raises on any pending change
    finally:
        engine.dispose()


def test_migrations_downgrade_to_empty_and_upgrade_again(db_url: str) -> None:
    upgrade_schema(db_url)
    engine = _engine.create(_engine.normalise(db_url))
    try:
        with engine.connect() as conn, conn.begin():
            command.downgrade(_migrate.alembic_config(conn), "base")
    finally:
        engine.dispose()
    assert not TABLES & _tables(db_url)
    assert upgrade_schema(db_url).up_to_date


def test_a_database_from_a_newer_version_is_refused(db_url: str) -> None:
    upgrade_schema(db_url)
    engine = _engine.create(_engine.normalise(db_url))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'fffffffffff9'"))
    finally:
        engine.dispose()

    with pytest.raises(errors.StoreError, match=r"fffffffffff9.*upgrade infinibay"):
        Store.open(db_url)


def test_db_upgrade_and_current_with_clirunner(db_url: str) -> None:
    runner = CliRunner()

    empty = runner.invoke(main.cli, ["--db", db_url, "db", "current"])
    assert empty.exit_code == 0, empty.output
    assert "no schema yet" in empty.output and "infinibay db upgrade" in empty.output

    upgraded = runner.invoke(main.cli, ["--db", db_url, "db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    head = schema_state(db_url).head
    assert f"revision {head} (head)" in upgraded.output

    current = runner.invoke(main.cli, ["--db", db_url, "db", "current"])
    assert current.exit_code == 0
    assert f"revision {head} (head)" in current.output


def test_db_upgrade_as_a_real_subprocess_reads_the_environment(db_url: str) -> None:
    env = {**os.environ, "INFINIBAY_DATABASE_URL": db_url}
    infinibay = Path(sys.executable).parent / "infinibay"  # the installed console script
    done = subprocess.run(
        [str(infinibay), "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "(head)" in done.stdout
    assert schema_state(db_url).up_to_date


def test_db_upgrade_failure_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = "postgresql://reconciler:pa55word-not-shown@127.0.0.1:1/infinibay"
    result = CliRunner().invoke(main.cli, ["--db", url, "db", "upgrade"])

    assert result.exit_code == 1
    assert "pa55word-not-shown" not in result.output
    assert result.output.startswith("error: ")


def test_alembic_command_line_uses_the_settings_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(REPO / "alembic.ini"), "upgrade", "head"],
        env={**os.environ, "INFINIBAY_DATABASE_URL": url},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert schema_state(url).up_to_date


def test_default_database_is_the_sqlite_file_under_xdg_state_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with Store.open() as store:
        assert store.backend == "sqlite"
        assert store.installation_id()
    assert (tmp_path / "state" / "infinibay" / "state.db").is_file()
