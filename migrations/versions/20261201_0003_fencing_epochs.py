"""Fenced leases: epoch, expiry, session and node of each lease row; epochs on runs, events.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing rows get no expiry: they read as released, whoever wrote them.
    with op.batch_alter_table("writer_lock", schema=None) as batch_op:
        batch_op.add_column(sa.Column("epoch", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("backend", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("node", sa.String(length=128), nullable=True))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("epoch", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("epoch", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("epoch")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("epoch")
    with op.batch_alter_table("writer_lock", schema=None) as batch_op:
        batch_op.drop_column("node")
        batch_op.drop_column("backend")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("epoch")
