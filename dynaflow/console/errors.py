"""The console's errors: each carries the HTTP status it is answered with and a message that
says what was wrong and what to do; a page shows it, the API answers ``{"error": ...}``."""

from __future__ import annotations

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
)


class ConsoleError(Exception):
    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(ConsoleError):
    status = 400


class Forbidden(ConsoleError):
    status = 403


class NotFound(ConsoleError):
    status = 404


class Conflict(ConsoleError):
    status = 409


def status_of(exc: DynaflowError) -> int:
    """The HTTP status a library error is answered with."""
    if isinstance(exc, UnknownPlan | UnknownStep):
        return 404
    if isinstance(exc, InvalidState | IllegalTransition | ConcurrentModification):
        return 409
    if isinstance(exc, ConfigurationError | InvalidArgument):
        return 400
    if isinstance(exc, StorageError):
        return 503
    return 500
