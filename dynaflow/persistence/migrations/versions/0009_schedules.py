"""Delayed and chained plans (dynaflow_delayed, dynaflow_chains) and recurring schedules
(dynaflow_schedules).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dynaflow_delayed",
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("start_at", UTC, nullable=False),
        sa.Column("start_before", UTC, nullable=True),
        sa.Column("on_failed", sa.String(8), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["dynaflow_plans.id"],
            name="fk_dynaflow_delayed_plan_id_dynaflow_plans",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("plan_id", name="pk_dynaflow_delayed"),
    )
    op.create_index("ix_dynaflow_delayed_start_at", "dynaflow_delayed", ["start_at"])
    op.create_table(
        "dynaflow_chains",
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("after_id", sa.String(36), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["dynaflow_plans.id"],
            name="fk_dynaflow_chains_plan_id_dynaflow_plans",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["after_id"],
            ["dynaflow_plans.id"],
            name="fk_dynaflow_chains_after_id_dynaflow_plans",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("plan_id", "after_id", name="pk_dynaflow_chains"),
    )
    op.create_index("ix_dynaflow_chains_after_id", "dynaflow_chains", ["after_id"])
    op.create_table(
        "dynaflow_schedules",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("action_class", sa.String(255), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column("cron", sa.String(255), nullable=False),
        sa.Column("tz", sa.String(64), nullable=False),
        sa.Column("catch_up", sa.String(8), nullable=False),
        sa.Column("next_run_at", UTC, nullable=False),
        sa.Column("paused_at", UTC, nullable=True),
        sa.Column("last_run_at", UTC, nullable=True),
        sa.Column("last_plan_id", sa.String(36), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_dynaflow_schedules"),
    )
    op.create_index("ix_dynaflow_schedules_next_run_at", "dynaflow_schedules", ["next_run_at"])


def downgrade() -> None:
    op.drop_index("ix_dynaflow_schedules_next_run_at", table_name="dynaflow_schedules")
    op.drop_table("dynaflow_schedules")
    op.drop_index("ix_dynaflow_chains_after_id", table_name="dynaflow_chains")
    op.drop_table("dynaflow_chains")
    op.drop_index("ix_dynaflow_delayed_start_at", table_name="dynaflow_delayed")
    op.drop_table("dynaflow_delayed")
