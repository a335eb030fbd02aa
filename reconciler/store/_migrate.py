"""Schema migrations: bring a database to the code's schema, or report where it stands.

The Alembic scripts live in ``migrations/`` at the top of the repository, next to
the package (``Path(reconciler.__file__).parent.parent``), which holds for a
source checkout and an editable install. The store calls :func:`ensure_current`
on every open: a database already at head costs one ``SELECT`` on
``alembic_version``; an empty or older one is upgraded in place.

A database already at head is recognised without importing Alembic (a tenth
of a second of start-up for every command): :func:`_quick_head` reads the
revision ids straight from the scripts and one plain ``SELECT`` reads
``alembic_version``. Whenever that shortcut is unsure (no table, several
rows, several heads, a script it cannot read), Alembic decides, as before.

Concurrent first opens are safe: the upgrade runs in one transaction that first
takes a lock (PostgreSQL: a transaction-level advisory lock, released at commit;
SQLite: ``BEGIN IMMEDIATE``), and Alembic reads the current revision inside that
transaction, so the second opener finds the work done.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import SQLAlchemyError

import reconciler
from reconciler import errors
from reconciler.store import _engine

__all__ = [
    "MIGRATIONS_DIR",
    "MigrationState",
    "alembic_config",
    "ensure_current",
    "state",
    "upgrade",
]

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(reconciler.__file__).resolve().parent.parent / "migrations"
_PG_MIGRATE_KEY = 0x1B_5EC0_0002
_REVISION_RE = re.compile(r"^revision\b[^=\n]*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION_RE = re.compile(r"^down_revision\b[^=\n]*=(.*)$", re.MULTILINE)
_QUOTED_RE = re.compile(r"['\"]([^'\"]+)['\"]")


@dataclasses.dataclass(frozen=True)
class MigrationState:
    current: str | None  # None: an empty database
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for ``migrations/``; ``connection`` is handed to env.py."""
    from alembic.config import Config

    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise errors.StoreError(
            f"the migrations directory {MIGRATIONS_DIR} is missing; "
            "install infinibay from a source checkout (pip install -e .)"
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the repository always ships a revision
        raise errors.StoreError(f"no migration found in {MIGRATIONS_DIR}")
    return head


def _current(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    heads = MigrationContext.configure(conn).get_current_heads()
    return heads[0] if heads else None


def state(engine: Engine) -> MigrationState:
    """Where the database stands against the code's migrations; changes nothing."""
    with engine.connect() as conn:
        return MigrationState(current=_current(conn), head=_head())


def upgrade(engine: Engine) -> MigrationState:
    """Upgrade the database to head under the migration lock; returns the new state."""
    from alembic import command

    before = state(engine)
    _refuse_newer(before)
    with engine.connect().execution_options(**{_engine.WRITE_OPTION: True}) as conn:
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATE_KEY)))
            command.upgrade(alembic_config(conn), "head")
        return MigrationState(current=_current(conn), head=before.head)


def _quick_head() -> str | None:
    """The one head revision, read from the scripts' ``revision``/``down_revision``; or None."""
    revisions: set[str] = set()
    parents: set[str] = set()
    try:
        for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
            source = script.read_text(encoding="utf-8")
            revision = _REVISION_RE.search(source)
            down = _DOWN_REVISION_RE.search(source)
            if revision is None or down is None:
                return None
            revisions.add(revision.group(1))
            parents.update(_QUOTED_RE.findall(down.group(1)))
    except (OSError, UnicodeDecodeError):
        return None
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: Engine) -> bool:
    """True only when the database is certainly at head; False means "ask Alembic"."""
    head = _quick_head()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:
        return False  # no version table yet, or a database Alembic must look at
    return len(rows) == 1 and rows[0][0] == head


def ensure_current(engine: Engine) -> None:
    """Upgrade an empty or older database; refuse one written by newer code."""
    if _at_head(engine):
        return
    now = state(engine)
    if not now.up_to_date:
        upgrade(engine)


def _refuse_newer(now: MigrationState) -> None:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    if now.current is None:
        return
    script = ScriptDirectory.from_config(alembic_config())
    try:
        known = script.get_revision(now.current) is not None
    except CommandError:  # alembic's wording for an unknown revision id
        known = False
    if not known:
        raise errors.StoreError(
            f"the record is at schema revision {now.current}, which this version of "
            f"infinibay does not know (its newest is {now.head}); upgrade infinibay"
        )
