"""Sub-plans: the index on dynaflow_plans (parent_id) becomes (parent_id, state), so a parent
counts its children still to end without reading those that ended.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_dynaflow_plans_parent_id_state", "dynaflow_plans", ["parent_id", "state"]
    )
    op.drop_index("ix_dynaflow_plans_parent_id", table_name="dynaflow_plans")


def downgrade() -> None:
    op.create_index("ix_dynaflow_plans_parent_id", "dynaflow_plans", ["parent_id"])
    op.drop_index("ix_dynaflow_plans_parent_id_state", table_name="dynaflow_plans")
