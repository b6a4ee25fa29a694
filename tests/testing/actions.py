"""Actions the tests of dynaflow.testing plan and run."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dynaflow import Action, Polling
from dynaflow.testing import probe


class Provision(Action):
    """One machine: output ``{"uuid": "<name>-<profile>"}``."""

    class Input(BaseModel):
        name: str
        profile: str = "web"
        db: str | None = None

    class Output(BaseModel):
        uuid: str | None = None

    def plan(self, name: str, profile: str = "web", **deps: Any) -> None:
        self.plan_self(name=name, profile=profile, **deps)

    def run(self) -> None:
        probe.record("run", self.input.name)
        self.output.uuid = f"{self.input.name}-{self.input.profile}"


class Watch(Action):
    """Subscribed to Provision: planned with each machine, runs once it exists."""

    subscribe = Provision

    def plan(self, name: str, *args: Any, **kwargs: Any) -> None:
        trigger = self.triggering_action
        assert trigger is not None
        self.plan_self(host=name, machine=trigger.output.uuid)

    def run(self) -> None:
        self.output["watching"] = f"{self.input['host']}={self.input['machine']}"


class Stack(Action):
    """db and cache at once, then app, wired to the db."""

    def plan(self, prefix: str = "") -> None:
        with self.sequence():
            with self.concurrence():
                db = self.plan_action(Provision, f"{prefix}db", "db")
                self.plan_action(Provision, f"{prefix}cache", "cache")
            self.plan_action(Provision, f"{prefix}app", db=db.output.uuid)


class Broken(Action):
    def plan(self, reason: str) -> None:
        raise ValueError(reason)


class Job(Polling, Action):
    """Polls a fake job that is done after ``input["polls"]`` polls; each poll is recorded with
    the clock's time."""

    poll_intervals = (1, 5)
    attempts_before_next_interval = 2
    timeout = 60

    def invoke_external_task(self) -> Any:
        return {"polls": 0}

    def poll_external_task(self) -> Any:
        from dynaflow.clock import now

        probe.record("poll", now())
        return {"polls": self.external_task["polls"] + 1}

    def done(self) -> bool:
        return bool(self.external_task["polls"] >= self.input["polls"])


class Approval(Action):
    """Waits for ``{"approved": bool}``; reminds itself after an hour."""

    def run(self, event: Any = None) -> None:
        if event is None:
            self.plan_event("remind", delay=3600)
            self.schedule_timeout(86400)
            self.suspend()
        if event == "remind":
            self.output["reminded"] = self.output.get("reminded", 0) + 1
            self.plan_event("remind", delay=3600)
            self.suspend()
        self.output["approved"] = event["approved"]
