"""dynaflow: durable plan-then-execute workflows."""

from dynaflow.action import Action, Cancellable
from dynaflow.events import SuspendedHandle
from dynaflow.exceptions import (
    ConcurrentModification,
    ConfigurationError,
    CorruptRecord,
    DatabaseUnavailable,
    DynaflowError,
    EventRejected,
    IllegalTransition,
    InvalidArgument,
    InvalidState,
    MissingOutputKey,
    NotJSON,
    PlanningError,
    PlanningFailed,
    SchemaMismatch,
    StorageError,
    UnknownActionClass,
    UnknownPlan,
    UnknownStep,
    WorldClosed,
)
from dynaflow.execution_plan import (
    ActionRecord,
    ExecutionPlan,
    HistoryRecord,
    PlanRecord,
    StepError,
    StepRecord,
)
from dynaflow.middleware import Middleware, TransactionMiddleware
from dynaflow.middleware.context import ContextMiddleware
from dynaflow.polling import Polling
from dynaflow.rescue import Rescue, Retry
from dynaflow.states import PlanResult, PlanState, StepKind, StepState
from dynaflow.values import OutputRef
from dynaflow.world import Triggered, World

__version__ = "0.1.0"

__all__ = [
    # core
    "Action",
    "World",
    "Triggered",
    "OutputRef",
    # run-phase protocol
    "Polling",
    "Cancellable",
    "SuspendedHandle",
    # failures
    "Rescue",
    "Retry",
    # middleware
    "Middleware",
    "TransactionMiddleware",
    "ContextMiddleware",
    # snapshots and states
    "ExecutionPlan",
    "PlanRecord",
    "ActionRecord",
    "StepRecord",
    "StepError",
    "HistoryRecord",
    "PlanState",
    "PlanResult",
    "StepState",
    "StepKind",
    # errors
    "DynaflowError",
    "ConfigurationError",
    "PlanningError",
    "PlanningFailed",
    "UnknownPlan",
    "UnknownStep",
    "UnknownActionClass",
    "EventRejected",
    "InvalidArgument",
    "InvalidState",
    "IllegalTransition",
    "ConcurrentModification",
    "MissingOutputKey",
    "NotJSON",
    "StorageError",
    "DatabaseUnavailable",
    "SchemaMismatch",
    "CorruptRecord",
    "WorldClosed",
]
