"""Requests between worlds through the database: dynaflow_requests.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dynaflow_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("args", sa.JSON(), nullable=True),
        sa.Column("world_id", sa.String(64), nullable=True),
        sa.Column("requested_by", sa.String(255), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("taken_by", sa.String(64), nullable=True),
        sa.Column("taken_at", UTC, nullable=True),
        sa.Column("answered_at", UTC, nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("declined", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["dynaflow_plans.id"],
            name="fk_dynaflow_requests_plan_id_dynaflow_plans",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_dynaflow_requests"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_dynaflow_requests_answered_at_taken_by_id",
        "dynaflow_requests",
        ["answered_at", "taken_by", "id"],
    )
    op.create_index("ix_dynaflow_requests_plan_id", "dynaflow_requests", ["plan_id"])


def downgrade() -> None:
    op.drop_index("ix_dynaflow_requests_plan_id", table_name="dynaflow_requests")
    op.drop_index("ix_dynaflow_requests_answered_at_taken_by_id", table_name="dynaflow_requests")
    op.drop_table("dynaflow_requests")
