"""Actions the console tests run on a real executor world, and what steers them: the names
of deploys that fail (:data:`BROKEN`) and gates a running step waits on (:data:`GATES`)."""

from __future__ import annotations

import threading
from typing import Any

from dynaflow import Action, Cancellable, Rescue

#: how long a test waits for anything
WAIT = 10.0
#: names whose Deploy fails (a test repairs one by discarding it)
BROKEN: set[str] = set()
_gates: dict[str, threading.Event] = {}
_arrived: dict[str, threading.Event] = {}
_lock = threading.Lock()


def gate(name: str) -> threading.Event:
    with _lock:
        return _gates.setdefault(name, threading.Event())


def arrived(name: str) -> threading.Event:
    with _lock:
        return _arrived.setdefault(name, threading.Event())


def reset() -> None:
    BROKEN.clear()
    with _lock:
        for event in _gates.values():
            event.set()  # nothing stays blocked past its test
        _gates.clear()
        _arrived.clear()


class Deploy(Action):
    """Deploys ``name``: fails while the name is in :data:`BROKEN`; with ``hold``, waits for
    the gate of that name first (announcing itself)."""

    def plan(self, name: str, hold: str | None = None, **extra: Any) -> None:
        self.plan_self(name=name, hold=hold, **extra)

    def run(self) -> None:
        name = self.input["name"]
        if self.input.get("hold"):
            arrived(self.input["hold"]).set()
            gate(self.input["hold"]).wait(WAIT)
        if name in BROKEN:
            raise RuntimeError(f"cannot deploy {name}")
        self.output["deployed"] = name

    def finalize(self) -> None:
        pass


class Release(Action):
    """Deploys ``names`` one after another (a failed deploy pauses the plan)."""

    label = "release"

    def plan(self, names: list[str], hold: str | None = None) -> None:
        with self.sequence():
            for name in names:
                self.plan_action(Deploy, name, hold=hold if name == names[-1] else None)


class Nightly(Release):
    label = "nightly backup"


class Weekly(Release):
    label = "weekly report"


class Reporting(Action):
    """Logs two lines (one with markup) and reports 2 of 4 done."""

    label = "reporting"

    def plan(self) -> None:
        self.plan_self()

    def run(self) -> None:
        self.log("copying <b>files</b>")
        self.progress(2, 4)
        self.log("half way")


class Pair(Action):
    """Deploys api and web side by side; web waits for its gate."""

    label = "pair"

    def plan(self) -> None:
        with self.concurrence():
            self.plan_action(Deploy, "api")
            self.plan_action(Deploy, "web", hold="web")


class Wide(Action):
    """``count`` deploys side by side (a big plan)."""

    label = "wide"

    def plan(self, count: int) -> None:
        with self.concurrence():
            for n in range(count):
                self.plan_action(Deploy, f"host{n}")


class Waiting(Action, Cancellable):
    """Suspends until an event arrives; cancel() and abort() record which was called."""

    label = "waiting"

    def plan(self) -> None:
        self.plan_self()

    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()
        self.output["event"] = event

    def cancel(self) -> None:
        self.output["stopped_by"] = "cancel"

    def abort(self) -> None:
        self.output["stopped_by"] = "abort"


class Secretive(Action):
    """Stores a password and a token in its input, an API key in its output."""

    label = "secretive"
    secret_inputs = ("password", "db.token")
    secret_outputs = ("api_key",)

    def plan(self, user: str, password: str, token: str) -> None:
        self.plan_self(user=user, password=password, db={"host": "db1", "token": token})

    def run(self) -> None:
        self.output["api_key"] = "key-" + self.input["password"][::-1]
        self.output["user"] = self.input["user"]


class Marked(Action):
    """Succeeds with markup in its input and output."""

    def plan(self) -> None:
        self.plan_self(note="<b>bold</b>")

    def run(self) -> None:
        self.output["html"] = "<script>alert('output')</script>"


class Broken(Action):
    """Fails with markup in its error message."""

    def plan(self) -> None:
        self.plan_self()

    def run(self) -> None:
        raise ValueError("<img src=x onerror=alert('error')>")


class Hostile(Action):
    """Everything a plan stores, full of markup: its label, an output, an error."""

    label = '<script>alert("label")</script>'
    rescue_strategy = Rescue.PAUSE

    def plan(self) -> None:
        with self.sequence():
            self.plan_action(Marked)
            self.plan_action(Broken)
