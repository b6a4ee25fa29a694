"""Progress and logs of run steps: dynaflow_steps.progress, dynaflow_step_logs.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dynaflow_steps") as batch:
        batch.add_column(sa.Column("progress", sa.JSON(), nullable=True))
    op.create_table(
        "dynaflow_step_logs",
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("plan_id", "step_id", "seq", name=op.f("pk_dynaflow_step_logs")),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["dynaflow_plans.id"],
            name=op.f("fk_dynaflow_step_logs_plan_id_dynaflow_plans"),
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("dynaflow_step_logs")
    with op.batch_alter_table("dynaflow_steps") as batch:
        batch.drop_column("progress")
