"""Retention: an index on dynaflow_plans (state, ended_at), for the stopped plans that ended
first.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_dynaflow_plans_state_ended_at", "dynaflow_plans", ["state", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_dynaflow_plans_state_ended_at", table_name="dynaflow_plans")
