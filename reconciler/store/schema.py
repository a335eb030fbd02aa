"""The record's tables, as SQLAlchemy 2 typed declarative models.

One :data:`metadata` with a naming convention, so every constraint and index has
a stable name that Alembic can find again on both backends (``migrations/env.py``
imports it; ``alembic check`` in the tests proves models and migrations agree).

Two column types smooth over the backends:

* :data:`JSONType` is ``JSONB`` on PostgreSQL and ``JSON`` (text) on SQLite.
* :class:`UTCDateTime` stores ``timestamptz`` on PostgreSQL and naive UTC text on
  SQLite, and always hands back timezone-aware UTC datetimes, so the code above
  never sees a naive datetime and comparisons sort correctly on both.

These ORM classes never leave :mod:`reconciler.store`; the store converts them to
the frozen dataclasses of :mod:`reconciler.models.record`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "Event",
    "Installation",
    "JSONType",
    "Resource",
    "Revision",
    "Run",
    "Token",
    "UTCDateTime",
    "Volume",
    "WriterLock",
    "metadata",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

JSONType = JSON().with_variant(JSONB(), "postgresql")
# ``none_as_null``: a Python ``None`` becomes SQL NULL, not the JSON literal ``null``.
NullableJSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# SQLite only turns an INTEGER PRIMARY KEY into an auto-incrementing rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend; naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the record; use UTC")
        value = value.astimezone(dt.UTC)
        # SQLite keeps text: store naive UTC so values compare and sort as strings.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = metadata


class Resource(Base):
    """The applied desired state of one resource plus its last written status."""

    __tablename__ = "resources"
    __table_args__ = (UniqueConstraint("kind", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(253))
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    generation: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    spec_hash: Mapped[str] = mapped_column(String(128))
    source_file: Mapped[str | None] = mapped_column(Text)
    source_document: Mapped[int | None] = mapped_column(Integer)
    source_revision: Mapped[str | None] = mapped_column(String(255))
    labels: Mapped[dict[str, str]] = mapped_column(JSONType)
    annotations: Mapped[dict[str, str]] = mapped_column(JSONType)
    status: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Volume(Base):
    """The volume inventory: every volume a VM's disk uses that this installation made
    (or adopted), keyed by pool and file name since that is what libvirt knows.

    Written before the volume is created, so a pass killed in between leaves a
    volume the next pass still recognises as its own; a volume with no row is
    someone else's and is never grown, reused as a fresh disk, or deleted.
    """

    __tablename__ = "volumes"

    pool: Mapped[str] = mapped_column(String(253), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(64))
    owner_name: Mapped[str] = mapped_column(String(253))
    disk: Mapped[str] = mapped_column(String(253))
    created: Mapped[bool] = mapped_column(Boolean)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Revision(Base):
    """One row per generation of a resource: what was applied, when, from where."""

    __tablename__ = "revisions"
    __table_args__ = (
        UniqueConstraint("resource_id", "generation"),
        Index(None, "kind", "name", "generation"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(253))
    generation: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    spec_hash: Mapped[str] = mapped_column(String(128))
    source_revision: Mapped[str | None] = mapped_column(String(255))
    source_file: Mapped[str | None] = mapped_column(Text)
    applied_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    # Who applied it: ``cli:USER@HOST``, a git commit's author, a token's name.
    actor: Mapped[str | None] = mapped_column(String(255))


class Event(Base):
    """An event; repeats of (kind, name, reason, message) fold into one row.

    ``fold_key`` is a SHA-256 of that tuple. A unique index on the hash rather
    than on the four columns keeps the index small and valid for messages of any
    length (a PostgreSQL btree entry is limited to about 2.7 kB), and gives
    ``INSERT ... ON CONFLICT (fold_key)`` its target on both backends.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index(None, "kind", "name", "last_seen"),
        CheckConstraint("type IN ('Normal', 'Warning')", name="type"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    fold_key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(253))
    uid: Mapped[str | None] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    diff: Mapped[dict[str, Any] | None] = mapped_column(NullableJSONType)
    revision: Mapped[str | None] = mapped_column(String(255))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    count: Mapped[int] = mapped_column(Integer)
    first_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    # The fencing epoch of the last write that folded into this row; NULL on SQLite.
    epoch: Mapped[int | None] = mapped_column(BigInteger)
    # Who acted, as of the last write that folded into this row (see Revision.actor).
    actor: Mapped[str | None] = mapped_column(String(255))


class Run(Base):
    """One reconcile pass."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trigger: Mapped[str] = mapped_column(String(32))
    revision: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    counts: Mapped[dict[str, int]] = mapped_column(JSONType)
    result: Mapped[str | None] = mapped_column(String(32))
    # The fencing epoch of the pass (its writer lock's); NULL on SQLite.
    epoch: Mapped[int | None] = mapped_column(BigInteger)
    # The resources a narrowed pass was for (a libvirt event's VMs); NULL: a full pass.
    scope: Mapped[list[str] | None] = mapped_column(JSONType)
    # A sharded daemon's pass (SPEC §10): which daemon (its membership row) and the
    # hosts it held, host -> lease epoch; NULL for every other pass.
    holder: Mapped[str | None] = mapped_column(String(64))
    hosts: Mapped[dict[str, int] | None] = mapped_column(NullableJSONType)


class Installation(Base):
    """Exactly one row: the installation id, generated once per database.

    ``singleton`` is unique and must be 1, so a second row cannot exist and
    concurrent first openers race harmlessly through ``ON CONFLICT DO NOTHING``.
    """

    __tablename__ = "installation"
    __table_args__ = (CheckConstraint("singleton = 1", name="singleton"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    singleton: Mapped[int] = mapped_column(Integer, unique=True, server_default="1")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class WriterLock(Base):
    """One row per lease of the record: ``writer`` (the writer lock) and ``leader``.

    On PostgreSQL each row is a lease (:mod:`reconciler.store._locks`): its
    holder, the ``epoch`` it holds it at (one counter across both rows), when it
    expires by the server's clock (``NULL``: released) and the server pid of the
    holder's session, which keeps a session advisory lock for as long as it
    holds the row. Rows are never deleted, so the epoch never goes backwards.
    SQLite keeps the holder in the lock file next to the database instead.
    """

    __tablename__ = "writer_lock"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(255))
    since: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    epoch: Mapped[int] = mapped_column(BigInteger, server_default="0")
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    backend: Mapped[int | None] = mapped_column(Integer)
    # The holder's kernel boot and pid namespace: a pid means something only there.
    node: Mapped[str | None] = mapped_column(String(128))


class Token(Base):
    """An API token of the daemon's HTTP endpoints (SPEC §11): its hash, never its secret.

    ``secret_hash`` is the SHA-256 of the token; the token is 256 random bits, so a
    plain hash (no salt, no slow KDF) cannot be reversed by guessing, and the
    lookup on every request stays one indexed equality. ``last_used_at`` is
    written at most once a minute per token (the HTTP side throttles it).
    """

    __tablename__ = "tokens"
    __table_args__ = (CheckConstraint("role IN ('admin', 'viewer', 'user')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str | None] = mapped_column(String(253))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
