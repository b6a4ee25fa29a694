"""Registered through the ``dynaflow.actions`` entry point: dynaflow imports this module when a
World opens, and from then on every planning of ``CreateMachine`` also plans ``AuditMachine``."""

from __future__ import annotations

from typing import Any

from dynaflow import Action
from dynaflow.demo import CreateMachine


class AuditMachine(Action):
    subscribe = CreateMachine

    def plan(self, *args: Any, **kwargs: Any) -> None:
        trigger = self.triggering_action
        assert trigger is not None
        # a reference to the trigger's output: this runs after the machine exists
        self.plan_self(machine=trigger.output.uuid)

    def run(self) -> None:
        self.output["audited"] = f"audited {self.input['machine']}"
