"""dynaflow: durable plan-then-execute workflows."""

from dynaflow.action import Action, Cancellable
from dynaflow.events import SuspendedHandle
from dynaflow.exceptions import (
    AmbiguousPlanId,
    ConcurrentModification,
    ConfigurationError,
    ConnectionLost,
    CorruptRecord,
    DatabaseBusy,
    DatabaseFull,
    DatabaseReadOnly,
    DatabaseUnavailable,
    DataRejected,
    DynaflowError,
    EventRejected,
    ExecutorError,
    IdempotencyConflict,
    IllegalTransition,
    InvalidArgument,
    InvalidInput,
    InvalidState,
    MissingOutputKey,
    NotJSON,
    PlanningError,
    PlanningFailed,
    SchemaMismatch,
    SingletonActive,
    StorageError,
    SubPlansFailed,
    UnknownAction,
    UnknownActionClass,
    UnknownPlan,
    UnknownSchedule,
    UnknownStep,
    UnknownWorld,
    WorldClosed,
)
from dynaflow.execution_plan import (
    ActionRecord,
    ExecutionPlan,
    HistoryRecord,
    PlanRecord,
    StepError,
    StepRecord,
    WorldRecord,
)
from dynaflow.executor.futures import PlanFuture
from dynaflow.middleware import Middleware, TransactionMiddleware
from dynaflow.middleware.context import ContextMiddleware
from dynaflow.persistence.engine import make_engine
from dynaflow.persistence.reports import StepLogLine
from dynaflow.phases import PhaseContext
from dynaflow.plan_options import Args
from dynaflow.polling import Polling
from dynaflow.queues import Queue
from dynaflow.rescue import Rescue, Retry
from dynaflow.retention import PruneReport, Retention
from dynaflow.scheduled import DelayedPlan
from dynaflow.schedules import Schedule
from dynaflow.states import PlanResult, PlanState, StepKind, StepState
from dynaflow.sub_plans import SubPlan, SubPlans
from dynaflow.values import OutputRef
from dynaflow.world import Triggered, World

__version__ = "0.1.0"

__all__ = [
    # core
    "Action",
    "World",
    "Triggered",
    "make_engine",
    "PlanFuture",
    "OutputRef",
    "Args",
    # plans that start later
    "DelayedPlan",
    "Schedule",
    # retention
    "Retention",
    "PruneReport",
    # run-phase protocol
    "Polling",
    "SubPlans",
    "SubPlan",
    "Queue",
    "Cancellable",
    "SuspendedHandle",
    # failures
    "Rescue",
    "Retry",
    # middleware
    "Middleware",
    "TransactionMiddleware",
    "ContextMiddleware",
    "PhaseContext",
    # snapshots and states
    "ExecutionPlan",
    "PlanRecord",
    "ActionRecord",
    "StepRecord",
    "StepError",
    "HistoryRecord",
    "StepLogLine",
    "WorldRecord",
    "PlanState",
    "PlanResult",
    "StepState",
    "StepKind",
    # errors: the root, then by what went wrong
    "DynaflowError",
    # ... in how the world, a middleware or an action is set up or called
    "ConfigurationError",
    "InvalidArgument",
    # ... in an action: its planning, its class, its values
    "PlanningError",
    "PlanningFailed",
    "UnknownActionClass",
    "NotJSON",
    "InvalidInput",
    "MissingOutputKey",
    # ... in what was asked of a plan, a step or the world
    "UnknownPlan",
    "AmbiguousPlanId",
    "UnknownStep",
    "UnknownWorld",
    "UnknownAction",
    "UnknownSchedule",
    "InvalidState",
    "IllegalTransition",
    "ConcurrentModification",
    "IdempotencyConflict",
    "SingletonActive",
    "EventRejected",
    "WorldClosed",
    "SubPlansFailed",
    "ExecutorError",
    # ... in the database
    "StorageError",
    "DatabaseUnavailable",
    "ConnectionLost",
    "DatabaseBusy",
    "DatabaseFull",
    "DatabaseReadOnly",
    "DataRejected",
    "SchemaMismatch",
    "CorruptRecord",
]
