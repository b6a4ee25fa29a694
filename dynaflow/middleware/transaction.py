"""Runs the plan phase and the finalize phase each inside one database transaction.

Application code reaches the transaction through ``action.connection`` (a SQLAlchemy
``Connection``): what a finalizer writes to its own tables commits together with the steps'
states, or not at all.
"""

from __future__ import annotations

from typing import Any

from dynaflow.middleware.base import Middleware
from dynaflow.phases import PhaseContext
from dynaflow.types import CallNext


class TransactionMiddleware(Middleware):
    def plan_phase(self, plan: PhaseContext, call_next: CallNext) -> Any:
        with plan.transaction():
            return call_next()

    def finalize_phase(self, plan: PhaseContext, call_next: CallNext) -> Any:
        with plan.transaction():
            return call_next()
