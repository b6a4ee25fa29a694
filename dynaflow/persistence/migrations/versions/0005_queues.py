"""Declared queues and their cluster-wide limits (dynaflow_queues); requests that run one step
in another world (dynaflow_requests.queue, .outcome).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dynaflow_queues",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("limit", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_dynaflow_queues"),
    )
    with op.batch_alter_table("dynaflow_requests") as batch:
        batch.add_column(sa.Column("queue", sa.String(64), nullable=True))
        batch.add_column(sa.Column("outcome", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dynaflow_requests") as batch:
        batch.drop_column("outcome")
        batch.drop_column("queue")
    op.drop_table("dynaflow_queues")
