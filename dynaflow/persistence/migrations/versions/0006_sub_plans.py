"""Sub-plans: a child plan knows the plan and the step that spawned it
(dynaflow_plans.parent_id, .parent_step_id).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dynaflow_plans") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("parent_step_id", sa.Integer(), nullable=True))
        batch.create_index("ix_dynaflow_plans_parent_id", ["parent_id"])


def downgrade() -> None:
    with op.batch_alter_table("dynaflow_plans") as batch:
        batch.drop_index("ix_dynaflow_plans_parent_id")
        batch.drop_column("parent_step_id")
        batch.drop_column("parent_id")
