"""Each world's own lease, and when it runs out: dynaflow_worlds.lease, .expires_at.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("dynaflow_worlds") as batch:
        batch.add_column(sa.Column("lease", sa.Float(), nullable=True))
        batch.add_column(sa.Column("expires_at", UTC, nullable=True))
        batch.create_index("ix_dynaflow_worlds_expires_at", ["expires_at"])


def downgrade() -> None:
    with op.batch_alter_table("dynaflow_worlds") as batch:
        batch.drop_index("ix_dynaflow_worlds_expires_at")
        batch.drop_column("expires_at")
        batch.drop_column("lease")
