"""Fixtures of the browser tests: Playwright driving Debian's chromium against real processes.

Per test module: a PostgreSQL schema of its own with a ``dynaflow worker`` process that runs
the plans (the cluster tests' harness), ``dynaflow console`` with a token as a real process and a
client world in the test process that plans (:func:`stack`; :meth:`Stack.console` starts more
consoles on the same database, a read-only one say); and chromium (:func:`browser`). Per test
(:func:`page`): a browser context of its own, signed in to the console as ``alice``.

The tests steer the steps with files in :attr:`Stack.files` (see :mod:`.actions`).

Screenshots (test_screenshots.py) go to the test's temporary folder; set
``DYNAFLOW_SCREENSHOTS`` to a folder (``docs/console`` for the ones docs/console.md shows) to
write them there.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cluster.harness import (
    WAIT,
    Database,
    Worker,
    environment,
    postgres_schema,
    stop,
    wait_until,
)

from dynaflow import ExecutionPlan, World

#: the console's token in these tests (a long random one in real life)
TOKEN = "browser-tests-token-6f1d2c"
#: who signs in (recorded with each action in the plan's history)
OPERATOR = "alice"
#: the module the worker and the consoles import
ACTIONS = "browser.actions"
#: chromium's flags: headless, and nothing that reaches the network by itself
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHROMIUM = os.environ.get("DYNAFLOW_TEST_CHROMIUM", "/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 800}
#: how long an assertion on a page waits for it to hold (the pages update once a second)
EXPECT_WAIT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortTaken(Exception):
    """The console could not listen on its port (another process took it first)."""


class Console:
    """A ``dynaflow console`` process on a free port; its output goes to
    ``<directory>/<name>.log``."""

    def __init__(
        self,
        url: str,
        directory: Path,
        name: str,
        *,
        token: str | None = TOKEN,
        read_only: bool = False,
    ) -> None:
        self.name, self.token = name, token
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = directory / f"{name}.log"
        args = [sys.executable, "-m", "dynaflow.cli", "console", "--url", url]
        args += ["--import", ACTIONS, "--port", str(self.port)]
        args += ["--read-only"] if read_only else []
        env = environment(directory / "runs")
        env.pop("DYNAFLOW_CONSOLE_TOKEN", None)
        if token is not None:
            env["DYNAFLOW_CONSOLE_TOKEN"] = token  # not on the command line: see docs/console.md
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                args, cwd=directory, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        self._ready()

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _ready(self) -> None:
        """Wait until ``GET /api/plans`` answers."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                self.get("/api/plans")
                return
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None:
                    if "address already in use" in self.output():
                        raise PortTaken(self.port) from None
                    raise AssertionError(
                        f"console {self.name} exited ({self.process.returncode}):\n"
                        + self.output()[-3000:]
                    ) from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(
                        f"console {self.name} did not answer within {WAIT}s:\n"
                        + self.output()[-3000:]
                    ) from None
                time.sleep(0.1)

    def get(self, path: str) -> Any:
        """``GET path`` of the JSON API with the token (an ``HTTPError`` for a refusal)."""
        request = urllib.request.Request(self.base + path, headers=self.headers())
        with urllib.request.urlopen(request, timeout=WAIT) as answer:
            return json.loads(answer.read())

    def stop(self) -> None:
        stop(self.process)


@dataclass
class Stack:
    """A module's database with a worker and consoles on it."""

    url: str
    directory: Path
    db: Database
    client: World
    worker: Worker
    consoles: list[Console] = field(default_factory=list)
    #: every file handed out by :meth:`file` (created at the end, so that no step waits on)
    handed_out: list[Path] = field(default_factory=list)

    @property
    def files(self) -> Path:
        """Where the tests' gate and fix files go."""
        path = self.directory / "files"
        path.mkdir(exist_ok=True)
        return path

    def file(self, what: str) -> str:
        """A path of a file no test has used yet (not created)."""
        path = self.files / f"{what}-{uuid.uuid4().hex[:8]}"
        self.handed_out.append(path)
        return str(path)

    def open_every_gate(self) -> None:
        for path in self.handed_out:
            path.touch()

    def console(self, name: str, **options: Any) -> Console:
        """Start another console on this database (``token=``, ``read_only=``); on another free
        port if another process took the one it was given first."""
        for attempt in range(3):
            try:
                console = Console(self.url, self.directory, f"{name}-{attempt}", **options)
            except PortTaken:
                continue
            self.consoles.append(console)
            return console
        raise AssertionError(f"console {name}: no free port in 3 attempts")

    @property
    def main(self) -> Console:
        """The console the tests use: a token, operators may act."""
        return self.consoles[0]

    def plan_state(self, plan_id: str) -> tuple[str, str]:
        return self.db.plan_states([plan_id])[plan_id]

    def wait_for(
        self, plan_id: str, state: str, result: str | None = None, timeout: float = WAIT
    ) -> ExecutionPlan:
        """Wait until the plan is ``state`` (with ``result``); the plan."""
        wait_until(
            lambda: self.plan_state(plan_id),
            lambda found: found[0] == state and (result is None or found[1] == result),
            f"plan {plan_id} {state} {result or ''}",
            timeout,
        )
        return self.client.get_plan(plan_id)

    def history(self, plan_id: str) -> list[str]:
        """The plan's history events, oldest first."""
        return [event for p, event, _, _ in self.db.history() if p == plan_id]


@pytest.fixture(scope="module")
def stack(pg_admin: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("browser")
    (directory / "runs").mkdir()
    with postgres_schema(pg_admin) as (_, url):
        db = Database(url)
        worker = Worker(url, directory, "worker", imports=(ACTIONS,))
        client = World(url, executor=None)
        stack = Stack(url, directory, db, client, worker)
        try:
            worker.registered(db)
            stack.console("console")
            yield stack
        finally:
            for console in stack.consoles:
                console.stop()
            stack.open_every_gate()  # a failed test may have left a step waiting
            worker.stop()
            client.close()
            db.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, for one test module: Playwright's synchronous API keeps an event loop running
    in this thread while it is started (``asyncio.run`` fails meanwhile), so it must not outlive
    the browser tests."""
    from playwright.sync_api import expect, sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"no chromium at {CHROMIUM}: install Debian's (apt-get install chromium; .ci/run "
            "does) or point DYNAFLOW_TEST_CHROMIUM at one; leave these tests out with "
            "-m 'not slow'",
            pytrace=False,
        )
    expect.set_options(timeout=EXPECT_WAIT * 1000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


ContextFactory = Callable[..., Any]


@pytest.fixture
def new_context(browser: Any) -> Iterator[ContextFactory]:
    """``new_context(console, sign_in=True)``: a browser context of its own on ``console``
    (signed in as :data:`OPERATOR` when the console has a token); closed at the end."""
    contexts: list[Any] = []

    def make(console: Console, *, sign_in: bool = True) -> Any:
        context = browser.new_context(viewport=VIEWPORT, base_url=console.base)
        context.set_default_timeout(EXPECT_WAIT * 1000)
        contexts.append(context)
        if sign_in and console.token:
            sign_in_as(context.new_page(), console.token)
        return context

    yield make
    for context in contexts:
        context.close()


def sign_in_as(page: Any, token: str, name: str = OPERATOR) -> None:
    from playwright.sync_api import expect

    page.goto("/signin")
    form = page.get_by_test_id("signin-form")
    form.locator("input[name=token]").fill(token)
    form.locator("input[name=name]").fill(name)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("plans-table").or_(page.get_by_test_id("no-plans"))).to_be_visible()


@pytest.fixture
def page(stack: Stack, new_context: ContextFactory) -> Any:
    """A page signed in to the module's console."""
    context = new_context(stack.main)
    return context.pages[0]


def csrf(page: Any) -> str:
    """The CSRF token of the page's session (its ``<meta name="csrf-token">``)."""
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token, "no CSRF token on " + page.url
    return str(token)
