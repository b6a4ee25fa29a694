"""dynaflow's tables, on one MetaData. Migrations in ``migrations/`` must produce exactly these."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

UTC = DateTime(timezone=True)

plans = Table(
    "dynaflow_plans",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("label", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("result", String(16), nullable=False),
    Column("root_action_class", String(255)),
    # the idempotency key, and the arguments (class, args, kwargs as JSON) it was first given
    Column("key", String(255), unique=True),
    Column("key_arguments", JSON),
    Column("created_at", UTC, nullable=False),
    Column("started_at", UTC),
    Column("ended_at", UTC),
    Column("world_id", String(64)),
    Column("run_flow", JSON),
    Column("error", JSON),
    #: a sub-plan: the plan and the step that spawned it
    Column("parent_id", String(36)),
    Column("parent_step_id", Integer),
    Index(None, "state"),
    Index(None, "created_at"),
    Index(None, "label"),
    # a parent's children, and those of them still to end
    Index(None, "parent_id", "state"),
    # retention: the stopped plans that ended first
    Index(None, "state", "ended_at"),
)

# the singleton keys held by plans that have not stopped: inserted with the plan, deleted in
# the transaction that stops it; the primary key lets one plan at a time hold a key
singletons = Table(
    "dynaflow_singletons",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("plan_id", String(36), nullable=False),
    ForeignKeyConstraint(["plan_id"], ["dynaflow_plans.id"], ondelete="CASCADE"),
    Index(None, "plan_id"),
)

actions = Table(
    "dynaflow_actions",
    metadata,
    Column("plan_id", String(36), nullable=False),
    Column("id", Integer, nullable=False),
    Column("action_class", String(255), nullable=False),
    Column("input", JSON, nullable=False),
    Column("output", JSON, nullable=False),
    Column("parent_id", Integer),
    Column("trigger_id", Integer),
    PrimaryKeyConstraint("plan_id", "id"),
    ForeignKeyConstraint(["plan_id"], ["dynaflow_plans.id"], ondelete="CASCADE"),
)

steps = Table(
    "dynaflow_steps",
    metadata,
    Column("plan_id", String(36), nullable=False),
    Column("id", Integer, nullable=False),
    Column("action_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("action_class", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("queue", String(64), nullable=False, default="default"),
    Column("position", Integer, nullable=False),
    Column("started_at", UTC),
    Column("ended_at", UTC),
    Column("duration", Float),
    Column("error", JSON),
    Column("world_id", String(64)),
    #: a run step's progress: {"done": ..., "total": ..., "weight": ...} (all optional)
    Column("progress", JSON),
    PrimaryKeyConstraint("plan_id", "id"),
    ForeignKeyConstraint(["plan_id"], ["dynaflow_plans.id"], ondelete="CASCADE"),
    Index(None, "state", "queue"),
)

#: what run steps logged (``self.log``), numbered per step
step_logs = Table(
    "dynaflow_step_logs",
    metadata,
    Column("plan_id", String(36), nullable=False),
    Column("step_id", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", UTC, nullable=False),
    Column("message", Text, nullable=False),
    PrimaryKeyConstraint("plan_id", "step_id", "seq"),
    ForeignKeyConstraint(["plan_id"], ["dynaflow_plans.id"], ondelete="CASCADE"),
)

edges = Table(
    "dynaflow_edges",
    metadata,
    Column("plan_id", String(36), nullable=False),
    Column("from_step", Integer, nullable=False),
    Column("to_step", Integer, nullable=False),
    PrimaryKeyConstraint("plan_id", "from_step", "to_step"),
    ForeignKeyConstraint(["plan_id"], ["dynaflow_plans.id"], ondelete="CASCADE"),
)

history = Table(
    "dynaflow_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", String(36), nullable=False),
    Column("at", UTC, nullable=False),
    Column("event", String(64), nullable=False),
    Column("step_id", Integer),
    Column("world_id", String(64)),
    Column("detail", JSON),
    ForeignKeyConstraint(["plan_id"], ["dynaflow_plans.id"], ondelete="CASCADE"),
    Index(None, "plan_id"),
)

events = Table(
    "dynaflow_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", String(36), nullable=False),
    Column("step_id", Integer, nullable=False),
    # "event" (sent), "timer" (plan_event) or "timeout" (schedule_timeout)
    Column("kind", String(16), nullable=False),
    Column("payload", JSON),
    Column("created_at", UTC, nullable=False),
    Column("due_at", UTC),
    ForeignKeyConstraint(["plan_id"], ["dynaflow_plans.id"], ondelete="CASCADE"),
    Index(None, "plan_id", "step_id"),
    Index(None, "due_at"),
    # ids are never reused (an event id names one event for good), also on SQLite
    sqlite_autoincrement=True,
)

requests = Table(
    "dynaflow_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", String(36), nullable=False),
    # "execute" (run a planned or paused plan), "cancel", "halt", "retry"
    Column("kind", String(16), nullable=False),
    Column("args", JSON),
    # the world it is for; NULL: any executor world that can run the plan
    Column("world_id", String(64)),
    # the world that asked (for the history and `dynaflow status`)
    Column("requested_by", String(255)),
    Column("created_at", UTC, nullable=False),
    Column("taken_by", String(64)),
    Column("taken_at", UTC),
    Column("answered_at", UTC),
    # what the world that took it raised ({"type": ..., "message": ...}), NULL: done
    Column("error", JSON),
    # world id -> why that world cannot run the plan
    Column("declined", JSON),
    # a "run" request: the queue of the step it runs, and what came of it
    Column("queue", String(64)),
    Column("outcome", JSON),
    ForeignKeyConstraint(["plan_id"], ["dynaflow_plans.id"], ondelete="CASCADE"),
    Index(None, "answered_at", "taken_by", "id"),
    Index(None, "plan_id"),
    sqlite_autoincrement=True,
)

queues = Table(
    "dynaflow_queues",
    metadata,
    Column("name", String(64), primary_key=True),
    # most steps of the queue running at once across every world; NULL: no limit
    Column("limit", Integer),
    Column("updated_at", UTC, nullable=False),
)

worlds = Table(
    "dynaflow_worlds",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("started_at", UTC, nullable=False),
    Column("heartbeat_at", UTC, nullable=False),
    Column("hostname", String(255)),
    Column("pid", Integer),
    Column("executor", String(32)),
    Column("queues", JSON),
    # its own lease (seconds) and when that runs out: last heartbeat + lease, on the
    # database's clock; the others judge it by this, not by their own lease and clock
    Column("lease", Float),
    Column("expires_at", UTC),
    Index(None, "expires_at"),
)

delayed = Table(
    "dynaflow_delayed",
    metadata,
    # a plan stored ``scheduled``: when it may start, and the deadline after which it must not
    Column("plan_id", String(36), primary_key=True),
    Column("start_at", UTC, nullable=False),
    Column("start_before", UTC),
    # a chained plan: what it does when a prerequisite did not end well ("fail", "skip", "run")
    Column("on_failed", String(8), nullable=False),
    ForeignKeyConstraint(["plan_id"], ["dynaflow_plans.id"], ondelete="CASCADE"),
    Index(None, "start_at"),
)

chains = Table(
    "dynaflow_chains",
    metadata,
    # the plan ``plan_id`` starts only once ``after_id`` has stopped
    Column("plan_id", String(36), nullable=False),
    Column("after_id", String(36), nullable=False),
    PrimaryKeyConstraint("plan_id", "after_id"),
    ForeignKeyConstraint(["plan_id"], ["dynaflow_plans.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["after_id"], ["dynaflow_plans.id"], ondelete="CASCADE"),
    Index(None, "after_id"),
)

schedules = Table(
    "dynaflow_schedules",
    metadata,
    # a recurring plan: the action and its arguments, planned at each time of ``cron`` in ``tz``
    Column("key", String(255), primary_key=True),
    Column("action_class", String(255), nullable=False),
    Column("arguments", JSON, nullable=False),
    Column("cron", String(255), nullable=False),
    Column("tz", String(64), nullable=False),
    Column("catch_up", String(8), nullable=False),
    # the time of the next run (UTC); a world plans it once this has passed
    Column("next_run_at", UTC, nullable=False),
    Column("paused_at", UTC),
    Column("last_run_at", UTC),
    Column("last_plan_id", String(36)),
    # bumped by every change: each change (and each run planned) is a compare-and-set on it
    Column("revision", Integer, nullable=False),
    Column("created_at", UTC, nullable=False),
    Column("updated_at", UTC, nullable=False),
    Index(None, "next_run_at"),
)
