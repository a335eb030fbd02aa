"""The volume inventory; existing VMs keep the volume names they already use.

Generated volume names change from ``VM-DISK.qcow2``, where VM ``a`` disk
``b-root`` and VM ``a-b`` disk ``root`` collide, to ``VM.DISK.qcow2``. This
migration renames nothing: it records, for every VM in the record, the volume
each of its disks uses under the old scheme, so those VMs keep their volumes
and only new disks get the new names. Two VMs whose old names collided share
one file; the first in name order keeps the row, and the other gets a volume
of its own under the new scheme (its plan shows the disk change).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 21:58:00
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _old_volumes(bind: sa.Connection) -> list[dict[str, Any]]:
    resources = sa.table(
        "resources",
        sa.column("kind", sa.String()),
        sa.column("name", sa.String()),
        sa.column("spec", _JSON),
    )
    rows = bind.execute(
        sa.select(resources.c.name, resources.c.spec)
        .where(resources.c.kind == "VirtualMachine")
        .order_by(resources.c.name)
    )
    now = dt.datetime.now(dt.UTC)
    if bind.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # as the record's UTCDateTime stores it on SQLite
    seen: set[tuple[str, str]] = set()
    volumes = []
    for name, spec in rows:
        for disk in (spec or {}).get("effective", {}).get("disks", []):
            key = (disk["pool"], f"{name}-{disk['name']}.qcow2")
            if key in seen:
                continue
            seen.add(key)
            volumes.append(
                {
                    "pool": key[0],
                    "name": key[1],
                    "owner_kind": "VirtualMachine",
                    "owner_name": name,
                    "disk": disk["name"],
                    "created": True,
                    "recorded_at": now,
                }
            )
    return volumes


def upgrade() -> None:
    volumes = op.create_table(
        "volumes",
        sa.Column("pool", sa.String(length=253), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("owner_kind", sa.String(length=64), nullable=False),
        sa.Column("owner_name", sa.String(length=253), nullable=False),
        sa.Column("disk", sa.String(length=253), nullable=False),
        sa.Column("created", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pool", "name", name=op.f("pk_volumes")),
    )
    rows = _old_volumes(op.get_bind())
    if rows:
        op.bulk_insert(volumes, rows)


def downgrade() -> None:
    op.drop_table("volumes")
