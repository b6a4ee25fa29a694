"""Every error dynaflow raises derives from :class:`DynaflowError`; each message says what to do."""

from __future__ import annotations

from typing import Any


class DynaflowError(Exception):
    """Root of dynaflow's exceptions."""


class ConfigurationError(DynaflowError):
    """A World, middleware or action class is set up wrongly."""


class PlanningError(DynaflowError):
    """Raised inside the plan phase for a mistake in how an action plans (bad arguments, input)."""


class PlanningFailed(DynaflowError):
    """Planning raised; the plan is stopped with result error and nothing ran.

    ``plan_id`` names the persisted failed plan, ``cause`` is the original exception.
    """

    def __init__(self, plan_id: str, cause: BaseException) -> None:
        self.plan_id = plan_id
        self.cause = cause
        super().__init__(
            f"planning of plan {plan_id} failed: {type(cause).__name__}: {describe(cause)} "
            "(the plan is stopped with result 'error'; world.get_plan(plan_id) shows the step)"
        )


class UnknownPlan(DynaflowError, LookupError):
    def __init__(self, plan_id: Any) -> None:
        self.plan_id = plan_id
        super().__init__(
            f"no execution plan with id {plan_id!r}; world.find_plans() lists the existing ones"
        )


class AmbiguousPlanId(DynaflowError, LookupError):
    """A plan id prefix that more than one plan's id starts with."""

    def __init__(self, prefix: str, candidates: list[str], more: bool = False) -> None:
        self.prefix, self.candidates = prefix, candidates
        listed = ", ".join(candidates) + (", ..." if more else "")
        super().__init__(
            f"plan id {prefix!r} is ambiguous: the ids of {'more than ' if more else ''}"
            f"{len(candidates)} plans start with it ({listed}); give more of the id"
        )


class UnknownStep(DynaflowError, LookupError):
    def __init__(self, plan_id: Any, step_id: Any) -> None:
        self.plan_id, self.step_id = plan_id, step_id
        super().__init__(
            f"plan {plan_id} has no step {step_id!r}; world.get_plan(plan_id).steps lists them"
        )


class UnknownAction(DynaflowError, LookupError):
    def __init__(self, plan_id: Any, action_id: Any) -> None:
        self.plan_id, self.action_id = plan_id, action_id
        super().__init__(
            f"plan {plan_id} has no action {action_id!r}; world.get_plan(plan_id).actions lists "
            "them"
        )


class UnknownActionClass(DynaflowError, LookupError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"unknown action class {name!r}: import the module that defines it before running "
            "the plan, or install the package that registers it in the 'dynaflow.actions' "
            "entry-point group"
        )


class UnknownWorld(DynaflowError, LookupError):
    def __init__(self, world_id: Any, known: list[str] | None = None) -> None:
        self.world_id = world_id
        listed = ", ".join(known or []) or "none"
        super().__init__(
            f"no executor world with id {world_id!r} is registered (registered: {listed}); "
            "`dynaflow status` lists them"
        )


class UnknownSchedule(DynaflowError, LookupError):
    def __init__(self, key: Any) -> None:
        self.key = key
        super().__init__(
            f"no recurring schedule with key {key!r}; world.schedules() (`dynaflow schedules "
            "list`) lists them"
        )


class IllegalTransition(DynaflowError):
    """A state change not allowed by the transition table in :mod:`dynaflow.states`."""


class InvalidState(DynaflowError):
    """An operation asked of a plan or step in a state that does not allow it."""


class ConcurrentModification(DynaflowError):
    """Another executor or operator changed the same row first (a lost compare-and-set)."""


class NotJSON(DynaflowError, TypeError):
    """A value that must be JSON (input, output, event) is not."""


class MissingOutputKey(DynaflowError, KeyError):
    """An output reference points at a key its producer never set."""


class ExecutorError(DynaflowError):
    """The executor failed while handling a request; the plans it held are taken up again
    from the database (a bug in dynaflow if the database is fine: please report it)."""


class StorageError(DynaflowError):
    """The database could not be opened, or holds something this code cannot use."""


class DatabaseUnavailable(StorageError):
    """The database URL could not be reached."""


class ConnectionLost(DatabaseUnavailable):
    """The connection to the database dropped during a call (the server went away, or its
    backend was terminated): the call's transaction was rolled back, unless the connection
    dropped during the commit itself. Reads are retried once on a fresh connection first."""


class DatabaseBusy(StorageError):
    """Another transaction held a lock longer than this one would wait (SQLite's one write
    lock for longer than the busy timeout; a lock, deadlock or serialization conflict on
    PostgreSQL). Nothing of the call was written; it may be tried again."""


class DatabaseFull(StorageError):
    """The database could not write its files: the disk or a file-size limit is full, or an
    I/O error. Nothing of the call was written."""


class DatabaseReadOnly(StorageError):
    """The database takes no writes: a read-only SQLite file or directory (or ``?mode=ro``), or
    a PostgreSQL standby."""


class DataRejected(StorageError):
    """The database refused a value (too long for its column, a character it cannot store).
    Nothing of the call was written."""


class SchemaMismatch(StorageError):
    """The database schema is newer than this code, or older and not migrated."""


class CorruptRecord(StorageError):
    """A row could not be decoded (bad JSON, unknown state)."""


class IdempotencyConflict(DynaflowError):
    """An idempotency key given again with other arguments than the plan it belongs to."""

    def __init__(self, key: str, plan_id: str, first: str, given: str) -> None:
        self.key, self.plan_id, self.first, self.given = key, plan_id, first, given
        super().__init__(
            f"idempotency key {key!r} belongs to plan {plan_id}, planned as {first}; this call "
            f"asks for {given}. Use a new key for other arguments, or the first call's "
            "arguments to get that plan"
        )


class SingletonActive(DynaflowError):
    """A singleton action's key is held by a plan that has not stopped yet."""

    def __init__(self, key: str, plan_id: str) -> None:
        self.key, self.plan_id = key, plan_id
        super().__init__(
            f"singleton {key!r} is held by plan {plan_id}, which has not stopped; wait for it "
            "to stop (world.follow(plan_id)), or pass on_conflict='return' to get that plan"
        )


class WorldClosed(DynaflowError):
    def __init__(self) -> None:
        super().__init__("this World is closed; open a new World(...) to plan or run")


class InvalidArgument(DynaflowError, ValueError):
    """An argument out of range or of the wrong kind (a negative delay, an empty interval list)."""


class EventRejected(DynaflowError):
    """An event for a step that is unknown, finished, or finished before handling it."""


class InvalidInput(DynaflowError, ValueError):
    """An action's resolved input (or its output) failed its ``Input`` (``Output``) model."""


def describe(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in naming the class when its ``__str__`` itself raises: the
    message of a user's exception must never take the error handling down with it."""
    try:
        return str(exc)
    except BaseException as inner:
        return (
            f"<unprintable {type(exc).__qualname__}: its __str__ raised {type(inner).__qualname__}>"
        )


class SubPlansFailed(DynaflowError):
    """Sub-plans of a :class:`~dynaflow.SubPlans` step did not succeed (the default
    ``on_sub_plans_finished`` raises it, naming them)."""
