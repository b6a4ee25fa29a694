"""The console's refusals: each is an HTTP error whose message says what was wrong and what to
do; a page shows it, the API answers ``{"error": message, "status": code}``. The library's own
errors (an unknown plan, an action not allowed in a plan's state) map to statuses here too."""

from __future__ import annotations

from starlette.exceptions import HTTPException

from dynaflow.exceptions import (
    ConcurrentModification,
    ConfigurationError,
    DynaflowError,
    IllegalTransition,
    InvalidArgument,
    InvalidState,
    StorageError,
    UnknownPlan,
    UnknownStep,
    UnknownWorld,
)


def problem(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


def bad_request(message: str) -> HTTPException:
    return problem(400, message)


def forbidden(message: str) -> HTTPException:
    return problem(403, message)


def not_found(message: str) -> HTTPException:
    return problem(404, message)


def conflict(message: str) -> HTTPException:
    return problem(409, message)


def status_of(exc: DynaflowError) -> int:
    """The HTTP status a library error is answered with."""
    if isinstance(exc, UnknownPlan | UnknownStep | UnknownWorld):
        return 404
    if isinstance(exc, InvalidState | IllegalTransition | ConcurrentModification):
        return 409
    if isinstance(exc, ConfigurationError | InvalidArgument):
        return 400
    if isinstance(exc, StorageError):
        return 503
    return 500
