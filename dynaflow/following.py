"""Futures for what happens in other processes: a plan's execution that another world runs,
and the answer to a request left for one.

One thread per world looks at the rows of what its futures wait for, when a notification
names one of them (PostgreSQL) and every ``poll_interval`` otherwise; it stops when nothing is
followed and starts again on demand.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from dynaflow import exceptions
from dynaflow.exceptions import DynaflowError, UnknownPlan
from dynaflow.executor import PlanFuture
from dynaflow.persistence.base import ENDED_STATES, PlanRecord, RequestRow, Storage

log = logging.getLogger("dynaflow.world")


@dataclass(slots=True)
class _Followed:
    future: PlanFuture
    #: the request whose answer comes first (``None``: only the plan's end is awaited)
    request: int | None
    #: what the request was (an ``execute`` is done once its plan runs)
    kind: str = ""
    #: the plan may not be committed yet (planned in the application's transaction): a plan
    #: not found is waited for, not an error
    uncommitted: bool = False


def rebuilt(error: dict[str, Any]) -> DynaflowError:
    """The exception another world answered a request with: the same dynaflow exception class
    where there is one, with its message."""
    message = str(error.get("message", ""))
    cls = getattr(exceptions, str(error.get("type", "")), None)
    if isinstance(cls, type) and issubclass(cls, DynaflowError):
        exc = cls.__new__(cls)
        Exception.__init__(exc, message)
        return exc
    return DynaflowError(f"{error.get('type')}: {message}")


class Follower:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._lock = threading.Lock()
        self._followed: list[_Followed] = []
        self._wake = threading.Event()
        #: what notifications named since the last look (plan ids, request ids as "a <id>");
        #: ``None``: look at everything (a new follower, a poll, a lost notification)
        self._named: set[str] | None = None
        #: followed since the last look (by id): looked at once whatever the notifications
        self._fresh: set[int] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    def follow(
        self,
        future: PlanFuture,
        request: int | None = None,
        kind: str = "",
        *,
        uncommitted: bool = False,
    ) -> None:
        """Resolve ``future`` when the request is answered (with its error, if it failed) and
        then the plan's execution has ended (stopped, or paused). ``uncommitted``: the plan
        and the request may not be visible yet (an application's transaction holds them)."""
        item = _Followed(future, request, kind, uncommitted)
        with self._lock:
            self._followed.append(item)
            self._fresh.add(id(item))  # looked at on the next wake (not everything else)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._loop, name="dynaflow-follower", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def notified(self, topic: str | None) -> None:
        """A notification (``None``: some may have been lost): wake up if it names a plan or
        request followed here."""
        if topic is None:
            with self._lock:
                self._named = None
            self._wake.set()
            return
        kind, _, name = topic.partition(" ")
        if kind not in ("p", "a"):
            return
        with self._lock:
            if not self._followed:
                return
            if self._named is not None:
                self._named.add(name if kind == "p" else topic)
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _loop(self) -> None:
        interval = self.storage.poll_interval
        next_scan = time.monotonic() + interval
        while not self._closed:
            self._wake.wait(max(0.0, next_scan - time.monotonic()))
            self._wake.clear()
            if self._closed:
                return
            with self._lock:
                named, self._named = self._named, set()
                fresh, self._fresh = self._fresh, set()
                if time.monotonic() >= next_scan:
                    named = None  # the poll, however busy: look at everything
                if named is None:
                    next_scan = time.monotonic() + interval
                followed = [
                    f
                    for f in self._followed
                    if named is None
                    or id(f) in fresh
                    or f.future.plan_id in named
                    or (f.request is not None and f"a {f.request}" in named)
                ]
                everything = named is None
            if not followed:
                with self._lock:
                    if not self._followed and everything:
                        self._thread = None
                        return
                continue
            try:
                done = self._look(followed)
            except Exception:  # keep following; the next look may work
                log.exception("following plans failed (%d followed)", len(followed))
                continue
            with self._lock:
                self._followed = [f for f in self._followed if id(f) not in done]

    def _look(self, items: list[_Followed]) -> set[int]:
        """The ids of ``items`` settled now (their futures resolved). Two reads for them all,
        however many: the requests first, then the plans (so a plan is read after its request's
        answer was seen)."""
        done = {id(item) for item in items if item.future.done()}
        live = [item for item in items if id(item) not in done]
        if not live:
            return done
        wanted = [item.request for item in live if item.request is not None]
        requests = self.storage.get_requests(wanted) if wanted else {}
        found = self.storage.plan_records(list({item.future.plan_id for item in live}))
        records = {record.id: record for record in found}
        answered: list[int] = []
        for item in live:
            try:
                if self._settle(item, records.get(item.future.plan_id), requests, answered):
                    done.add(id(item))
            except DynaflowError as exc:
                if not item.future.done():
                    item.future.set_exception(exc)
                done.add(id(item))
        if answered:
            self.storage.delete_requests(answered)
        return done

    @staticmethod
    def _settle(
        item: _Followed,
        record: PlanRecord | None,
        requests: dict[int, RequestRow],
        answered: list[int],
    ) -> bool:
        """Whether ``item`` is settled by what was read (its future resolved); the answered
        requests it read go to ``answered`` (to delete)."""
        future = item.future
        if record is None:
            if item.uncommitted:
                return False  # not committed yet (or rolled back: then this never resolves)
            raise UnknownPlan(future.plan_id)
        if item.request is not None:
            request = requests.get(item.request)
            if request is None and item.uncommitted:
                item.uncommitted = False
                return False  # the plan committed after its request was read: read again
            if request is not None and request.answered_at is None:
                return False  # not taken, or not answered yet
            failed = request is not None and request.error is not None
            if failed and (item.kind != "execute" or record.state not in ENDED_STATES):
                assert request is not None and request.error is not None
                future.set_exception(rebuilt(request.error))
                return True
            item.request = None
            if request is not None:
                answered.append(request.id or 0)
        item.uncommitted = False
        if record.state in ENDED_STATES:
            future.set_result(future.plan_id)
            return True
        return False
