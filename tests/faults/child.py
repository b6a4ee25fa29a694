"""A World in a process of its own (threaded executor), driven by a fault test through a pipe.

The test sends ``(tag, operation, arguments, at)``; the child runs each request on a thread of
its own (so that a request can arrive while another waits on a future), starting at the wall
clock time ``at`` if given (requests sent to two children with the same ``at`` start within a
millisecond or so of each other), and answers ``(tag, ("ok", value) | ("error", details),
seconds)``. See :data:`OPERATIONS` for what it can be asked. ``("close",)`` closes the world
and ends the process.

Options (a dict): ``lease``, ``workers``, ``world_id`` for the World; ``clock_offset``: this
process's dynaflow clock runs that many seconds ahead; ``ignore_sigxfsz``: writes beyond a
file-size limit fail with EFBIG instead of killing the process.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from datetime import timedelta
from typing import Any

from dynaflow import DynaflowError, World

from . import actions


def describe(exc: BaseException) -> dict[str, Any]:
    """What the caller of a dynaflow call saw: the exception's class, whether it is a library
    error, its message, and the classes of its causes."""
    chain, inner = [], exc.__cause__ or exc.__context__
    while inner is not None and len(chain) < 5:
        chain.append(_name(inner))
        inner = inner.__cause__ or inner.__context__
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable>"
    return {
        "type": _name(exc),
        "dynaflow": isinstance(exc, DynaflowError),
        "timeout": isinstance(exc, TimeoutError) and not isinstance(exc, DynaflowError),
        "message": message[:600],
        "causes": chain,
        "traceback": "".join(traceback.format_exception(exc))[-3000:],
    }


def _name(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def snapshot(future: Future[Any], timeout: float) -> dict[str, Any]:
    plan = future.result(timeout)
    return {"plan_id": plan.id, "state": str(plan.state), "result": str(plan.result)}


class Server:
    def __init__(self, world: World, conn: Any) -> None:
        self.world = world
        self.conn = conn
        self.send_lock = threading.Lock()
        self.futures: dict[str, Future[Any]] = {}

    def send(self, *message: Any) -> None:
        with self.send_lock:
            self.conn.send(message)

    def serve(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                return
            if message[0] == "close":
                return
            tag, operation, arguments, at = message
            threading.Thread(
                target=self.handle, args=(tag, operation, arguments, at), daemon=True
            ).start()

    def handle(self, tag: str, operation: str, arguments: dict[str, Any], at: float | None) -> None:
        if at is not None:
            while (left := at - time.time()) > 0.002:
                time.sleep(left - 0.002)
            while time.time() < at:
                pass
        started = time.monotonic()
        try:
            reply: tuple[Any, ...] = ("ok", OPERATIONS[operation](self, **arguments))
        except BaseException as exc:
            reply = ("error", describe(exc))
        self.send(tag, reply, time.monotonic() - started)

    # -- operations ------------------------------------------------------------------------

    def keep(self, future: Future[Any], wait: float | None) -> Any:
        plan_id = future.plan_id  # type: ignore[attr-defined]
        self.futures[plan_id] = future
        return plan_id if wait is None else snapshot(future, wait)

    def trigger(
        self,
        action: str,
        wait: float | None = None,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Plan and execute; the plan id, or (with ``wait``) its snapshot once it ended."""
        cls = getattr(actions, action)
        triggered = self.world.trigger(cls, idempotency_key=idempotency_key, **kwargs)
        return self.keep(triggered.future, wait)

    def resume(self, plan_id: str, wait: float | None = None) -> Any:
        return self.keep(self.world.resume(plan_id), wait)

    def skip(self, plan_id: str, step_id: int, wait: float | None = None) -> Any:
        return self.keep(self.world.skip(plan_id, step_id), wait)

    def wait(self, plan_id: str, timeout: float) -> Any:
        """The plan's snapshot once the future of the last request on it resolves."""
        return snapshot(self.futures[plan_id], timeout)

    def settle(self, plan_id: str, step: str, timeout: float) -> Any:
        """Wait until a run of ``step`` ended here, then until this world no longer executes
        the plan (its execution ended here, or it gave the plan up); return this world's id.
        An exception of the follow future counts as the end (a world declared dead fails its
        futures)."""
        deadline = time.monotonic() + timeout
        if not actions.finished(plan_id, step).wait(timeout):
            raise TimeoutError(f"step {step} of plan {plan_id} did not end here in {timeout}s")
        follow = self.world.follow(plan_id)
        try:
            follow.result(max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            raise
        except Exception:
            pass
        return self.world.id

    def fsize(self, limit: int | None) -> int:
        """Set (or, with ``None``, lift) this process's soft limit on the size of the files it
        writes (RLIMIT_FSIZE); writes beyond it fail with EFBIG."""
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard if limit is None else limit, hard))
        return resource.getrlimit(resource.RLIMIT_FSIZE)[0]

    def world_id(self) -> str:
        return self.world.id


OPERATIONS: dict[str, Callable[..., Any]] = {
    "trigger": Server.trigger,
    "resume": Server.resume,
    "skip": Server.skip,
    "wait": Server.wait,
    "settle": Server.settle,
    "fsize": Server.fsize,
    "world_id": Server.world_id,
}


def shift_clock(offset: float) -> None:
    """Make dynaflow's clock (:func:`dynaflow.clock.now`, and every dynaflow module's imported
    reference to it) run ``offset`` seconds ahead of the wall clock in this process."""
    import dynaflow.world  # noqa: F401  (imports the modules that refer to now)
    from dynaflow import clock

    real = clock.now
    delta = timedelta(seconds=offset)

    def shifted() -> Any:
        return real() + delta

    for name, module in list(sys.modules.items()):
        if (name == "dynaflow" or name.startswith("dynaflow.")) and getattr(
            module, "now", None
        ) is real:
            module.now = shifted  # type: ignore[attr-defined]


def process_main(url: str, options: dict[str, Any], conn: Any, log: str) -> None:
    """The target of the child process: stderr (and dynaflow's log) goes to ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    if options.get("ignore_sigxfsz"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if options.get("clock_offset"):
        shift_clock(options["clock_offset"])
    world = World(
        url,
        workers=options.get("workers", 4),
        lease=options.get("lease", 30.0),
        world_id=options.get("world_id"),
        shutdown_timeout=5,
    )
    server = Server(world, conn)
    server.send("world", world.id, os.getpid())
    try:
        server.serve()
    finally:
        world.close(timeout=5)
