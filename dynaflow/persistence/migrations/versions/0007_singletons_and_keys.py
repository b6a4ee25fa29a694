"""Singleton keys held by active plans (dynaflow_singletons); the arguments an idempotency key
was first given with (dynaflow_plans.key_arguments).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dynaflow_singletons",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_dynaflow_singletons"),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["dynaflow_plans.id"],
            name="fk_dynaflow_singletons_plan_id_dynaflow_plans",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_dynaflow_singletons_plan_id", "dynaflow_singletons", ["plan_id"])
    # SQLite adds (and drops) a column in place: a batch that copied dynaflow_plans would
    # drop the old table, and with foreign keys on that deletes every plan's rows
    op.add_column("dynaflow_plans", sa.Column("key_arguments", sa.JSON(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # SQLite 3.35+ drops a plain column in place
        op.execute("ALTER TABLE dynaflow_plans DROP COLUMN key_arguments")
    else:
        op.drop_column("dynaflow_plans", "key_arguments")
    op.drop_index("ix_dynaflow_singletons_plan_id", table_name="dynaflow_singletons")
    op.drop_table("dynaflow_singletons")
