"""The initial schema: plans, actions, steps, run edges, history, worlds.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = sa.DateTime(timezone=True)


def _plan_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["plan_id"],
        ["dynaflow_plans.id"],
        name=op.f(f"fk_{table}_plan_id_dynaflow_plans"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "dynaflow_plans",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("root_action_class", sa.String(length=255), nullable=True),
        sa.Column("key", sa.String(length=255), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("started_at", UTC, nullable=True),
        sa.Column("ended_at", UTC, nullable=True),
        sa.Column("world_id", sa.String(length=64), nullable=True),
        sa.Column("run_flow", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dynaflow_plans")),
        sa.UniqueConstraint("key", name=op.f("uq_dynaflow_plans_key")),
    )
    op.create_index(op.f("ix_dynaflow_plans_state"), "dynaflow_plans", ["state"])
    op.create_index(op.f("ix_dynaflow_plans_created_at"), "dynaflow_plans", ["created_at"])
    op.create_index(op.f("ix_dynaflow_plans_label"), "dynaflow_plans", ["label"])

    op.create_table(
        "dynaflow_actions",
        sa.Column("plan_id", sa.String(length=36), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action_class", sa.String(length=255), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("output", sa.JSON(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("trigger_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("plan_id", "id", name=op.f("pk_dynaflow_actions")),
        _plan_fk("dynaflow_actions"),
    )

    op.create_table(
        "dynaflow_steps",
        sa.Column("plan_id", sa.String(length=36), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("action_class", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("started_at", UTC, nullable=True),
        sa.Column("ended_at", UTC, nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("world_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("plan_id", "id", name=op.f("pk_dynaflow_steps")),
        _plan_fk("dynaflow_steps"),
    )
    op.create_index(op.f("ix_dynaflow_steps_state_queue"), "dynaflow_steps", ["state", "queue"])

    op.create_table(
        "dynaflow_edges",
        sa.Column("plan_id", sa.String(length=36), nullable=False),
        sa.Column("from_step", sa.Integer(), nullable=False),
        sa.Column("to_step", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "plan_id", "from_step", "to_step", name=op.f("pk_dynaflow_edges")
        ),
        _plan_fk("dynaflow_edges"),
    )

    op.create_table(
        "dynaflow_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("plan_id", sa.String(length=36), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=True),
        sa.Column("world_id", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dynaflow_history")),
        _plan_fk("dynaflow_history"),
    )
    op.create_index(op.f("ix_dynaflow_history_plan_id"), "dynaflow_history", ["plan_id"])

    op.create_table(
        "dynaflow_worlds",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("heartbeat_at", UTC, nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("executor", sa.String(length=32), nullable=True),
        sa.Column("queues", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dynaflow_worlds")),
    )


def downgrade() -> None:
    op.drop_table("dynaflow_worlds")
    op.drop_index(op.f("ix_dynaflow_history_plan_id"), table_name="dynaflow_history")
    op.drop_table("dynaflow_history")
    op.drop_table("dynaflow_edges")
    op.drop_index(op.f("ix_dynaflow_steps_state_queue"), table_name="dynaflow_steps")
    op.drop_table("dynaflow_steps")
    op.drop_table("dynaflow_actions")
    for name in ("label", "created_at", "state"):
        op.drop_index(op.f(f"ix_dynaflow_plans_{name}"), table_name="dynaflow_plans")
    op.drop_table("dynaflow_plans")
