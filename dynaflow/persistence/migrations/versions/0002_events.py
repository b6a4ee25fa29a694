"""Events and timers queued for steps: dynaflow_events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dynaflow_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("plan_id", sa.String(length=36), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("due_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dynaflow_events")),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["dynaflow_plans.id"],
            name=op.f("fk_dynaflow_events_plan_id_dynaflow_plans"),
            ondelete="CASCADE",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_dynaflow_events_plan_id_step_id"), "dynaflow_events", ["plan_id", "step_id"]
    )
    op.create_index(op.f("ix_dynaflow_events_due_at"), "dynaflow_events", ["due_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_dynaflow_events_due_at"), table_name="dynaflow_events")
    op.drop_index(op.f("ix_dynaflow_events_plan_id_step_id"), table_name="dynaflow_events")
    op.drop_table("dynaflow_events")
