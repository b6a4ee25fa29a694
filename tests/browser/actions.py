"""The actions of the browser tests, imported by the tests (they plan), by the worker process
that runs them and by the console processes (``--import browser.actions``, with tests/ on
PYTHONPATH).

The tests steer the steps with files: a :class:`Check` waits for its ``gate`` file to exist,
then fails unless the file it ``needs`` exists. A test repairs a failed step by creating the
file, and lets a running step end by creating its gate.
"""

from __future__ import annotations

import os
import time
from typing import Any

from dynaflow import Action, Rescue

#: the longest a step waits for its gate (then it fails: a test that forgot to open it)
GATE_WAIT = 120.0

#: what the hostile plan stores: each sets ``window.__pwned`` if a page runs it
SCRIPT = "<script>window.__pwned = 'script'</script>"
IMAGE = "<img src=x onerror=\"window.__pwned = 'image'\">"


def wait_for_file(path: str) -> None:
    deadline = time.monotonic() + GATE_WAIT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path} was not opened within {GATE_WAIT:.0f}s")
        time.sleep(0.02)


class Check(Action):
    """One step of a release: waits for the file ``gate`` (if given), then fails unless the
    file ``needs`` (if given) exists; outputs its name."""

    def plan(
        self,
        name: str,
        needs: str | None = None,
        gate: str | None = None,
        after: list[Any] | None = None,
    ) -> None:
        self.plan_self(name=name, needs=needs, gate=gate, after=after or [])

    def run(self) -> None:
        if self.input["gate"]:
            wait_for_file(self.input["gate"])
        needs = self.input["needs"]
        if needs and not os.path.exists(needs):
            raise FileNotFoundError(f"{self.input['name']}: {needs} is missing")
        self.output["checked"] = self.input["name"]


class Build(Check):
    pass


class Deploy(Check):
    pass


class Announce(Check):
    pass


class Release(Action):
    """``build``, then ``deploy api`` and ``deploy web`` side by side, then ``announce`` (which
    takes both deploys' outputs). ``needs`` and ``gates`` map step names to files (see
    :class:`Check`). A failed step pauses the plan."""

    label = "release"

    def plan(
        self, needs: dict[str, str] | None = None, gates: dict[str, str] | None = None
    ) -> None:
        needs, gates = needs or {}, gates or {}

        def check(kind: type[Check], name: str, **extra: Any) -> Action:
            return self.plan_action(
                kind, name, needs=needs.get(name), gate=gates.get(name), **extra
            )

        with self.sequence():
            check(Build, "build")
            with self.concurrence():
                api = check(Deploy, "deploy api")
                web = check(Deploy, "deploy web")
            check(Announce, "announce", after=[api.output["checked"], web.output["checked"]])


class Nightly(Release):
    label = "nightly"


class Weekly(Release):
    label = "weekly"


class Wide(Action):
    """``count`` checks side by side (a big plan)."""

    label = "wide"

    def plan(self, count: int) -> None:
        with self.concurrence():
            for n in range(count):
                self.plan_action(Check, f"host{n}")


class Marked(Action):
    """Succeeds with markup in its output."""

    def plan(self) -> None:
        self.plan_self(note="<b>bold</b>")

    def run(self) -> None:
        self.output["html"] = SCRIPT
        self.output["image"] = IMAGE


class Broken(Action):
    """Fails with markup in its error message."""

    def plan(self) -> None:
        self.plan_self()

    def run(self) -> None:
        raise ValueError(f"bad {IMAGE} {SCRIPT}")


class Hostile(Action):
    """Everything a plan stores, full of markup: its label, an output, an error."""

    label = SCRIPT
    rescue_strategy = Rescue.PAUSE

    def plan(self) -> None:
        with self.sequence():
            self.plan_action(Marked)
            self.plan_action(Broken)
