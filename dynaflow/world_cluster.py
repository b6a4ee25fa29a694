"""The World's side of the cluster: the worlds and queues on its database for operator
surfaces (status, forget, queues), and the notifications that wake its executor and its
followers. A part of :class:`~dynaflow.World`."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dynaflow.cluster import Cluster
from dynaflow.exceptions import ConfigurationError, InvalidState, UnknownWorld
from dynaflow.execution_plan import WorldRecord
from dynaflow.executor import Executor, ThreadedExecutor
from dynaflow.following import Follower
from dynaflow.mailbox import Mailbox
from dynaflow.persistence import Storage
from dynaflow.persistence.base import Listening, RequestRow
from dynaflow.queues import Queue

if TYPE_CHECKING:
    from dynaflow.world_scheduling import Starter

log = logging.getLogger("dynaflow.world")
#: what a notification topic asks the mailbox to look at
LOOK_AT = {"r": "requests", "n": "runs", "d": "answers"}


class ClusterSide:
    """See the module's docstring; :class:`~dynaflow.World` provides the state."""

    storage: Storage
    executor: Executor | None
    mailbox: Mailbox | None
    starter: Starter | None
    cluster: Cluster
    follower: Follower
    _pools: dict[str, int]
    _adopt: bool
    _look: bool
    _listening: Listening | None
    _listen_lock: threading.Lock
    _closed: bool

    @property
    def id(self) -> str:
        raise NotImplementedError

    def _check_open(self) -> None:
        raise NotImplementedError

    @property
    def lease(self) -> float:
        """Seconds without a heartbeat after which this world counts as dead and its plans are
        taken over."""
        return self.cluster.lease

    @lease.setter
    def lease(self, seconds: float) -> None:
        self.cluster.lease = float(seconds)

    # -- the worlds and queues on the database, for operator surfaces ------------------------

    # -- the database and the cluster, for operator surfaces and applications ----------------

    def worlds(self) -> list[WorldRecord]:
        """The executor worlds registered on this database (this one included if it has an
        executor), oldest first. A world whose heartbeat is older than its lease is dead; the
        next maintenance of a live world takes its plans over and drops it from this list."""
        self._check_open()
        at = self.storage.now()
        running = self.storage.running_steps()
        return [
            WorldRecord(
                row.id,
                row.hostname,
                row.pid,
                row.executor,
                row.started_at,
                row.heartbeat_at,
                row.queues,
                max(0.0, (at - row.heartbeat_at).total_seconds()),
                row.expires_at < at,
                running.get(row.id, 0),
            )
            for row in self.storage.worlds()
        ]

    def forget_world(self, world_id: str, *, force: bool = False) -> None:
        """Declare a world dead now, so that live worlds take its plans over on their next
        heartbeat and its requests go to others. A world whose heartbeat is fresh is refused
        (:class:`InvalidState`) unless ``force``: it may still be running steps."""
        self._check_open()
        rows = {row.id: row for row in self.storage.worlds()}
        row = rows.get(world_id)
        if row is None:
            raise UnknownWorld(world_id, sorted(rows))
        if not force and row.expires_at >= self.storage.now():
            raise InvalidState(
                f"world {world_id} is alive (its heartbeat is fresh, its lease runs until "
                f"{row.expires_at:%H:%M:%S} UTC); stop its process first, or pass force=True "
                "(--force) if you know it is gone"
            )
        self.storage.unregister_world(world_id)
        self.storage.release_requests(world_id)
        log.warning("world %s forgotten: live worlds take its plans over", world_id)

    def declare_queue(self, queue: Queue) -> None:
        """Store a queue's cluster-wide limit (replacing what was stored); executor worlds
        apply it from their next heartbeat."""
        self._check_open()
        if not isinstance(queue, Queue):
            raise ConfigurationError(f"declare_queue() takes a dynaflow.Queue, got {queue!r}")
        self.storage.declare_queue(queue.name, queue.limit)
        self.cluster.refresh_limits()

    def queues(self) -> dict[str, dict[str, Any]]:
        """Each queue known here (declared, served by a live world, or holding steps): its
        ``limit``, the ``worlds`` serving it (with their pool sizes) and its run steps by state
        (``pending``, ``running``, ``error``, ...)."""
        self._check_open()
        limits = self.storage.queue_limits()
        counts = self.storage.queue_counts()
        served: dict[str, dict[str, int]] = {}
        for row in self.worlds():
            if not row.stale:
                for name, size in (row.queues or {}).items():
                    served.setdefault(name, {})[row.id] = size
        return {
            name: {
                "limit": limits.get(name),
                "worlds": served.get(name, {}),
                **counts.get(name, {}),
            }
            for name in sorted({*limits, *counts, *served})
        }

    def now(self) -> datetime:
        """The database's clock, by which heartbeats and leases are judged."""
        self._check_open()
        return self.storage.now()

    def waiting_requests(self) -> list[RequestRow]:
        """Requests to executor worlds not answered yet, oldest first (with the reasons the
        worlds that declined them gave)."""
        self._check_open()
        return self.storage.open_requests()

    # -- notifications ----------------------------------------------------------------------

    def _listen(self) -> None:
        """Start listening to the database's notifications (once; PostgreSQL only)."""
        with self._listen_lock:
            if self._listening is None and not self._closed:
                self._listening = self.storage.listen(self._notified)

    def _notified(self, topic: str | None) -> None:
        self.follower.notified(topic)
        executor, mailbox = self.executor, self.mailbox
        if executor is None or mailbox is None:
            return
        kind, _, target = (topic or "").partition(" ")
        if (kind == "s" or topic is None) and self.starter is not None:
            self.starter.wanted()  # a plan was delayed or a schedule changed: look for due ones
        if kind == "s":
            if isinstance(executor, ThreadedExecutor):
                executor.run_pending()
            return
        if kind == "w":  # a world came or went
            self._look = True
            mailbox.wanted()
            if isinstance(executor, ThreadedExecutor):
                executor.run_pending()
            return
        if kind == "x":  # a world shut down and released plans: adopt them
            self._adopt = True
            mailbox.wanted()
            if isinstance(executor, ThreadedExecutor):
                executor.run_pending()
            return
        if kind == "q":  # a step of a limited queue ended somewhere: there may be room
            if target in executor.engine.limited:
                executor.engine.check_room = True
                if isinstance(executor, ThreadedExecutor):
                    executor.run_pending()
            return
        if kind != "n" and topic is not None and target not in ("*", self.id):
            return
        if topic is None:
            mailbox.wanted()
        elif kind in LOOK_AT and (kind != "n" or target in self._pools):
            mailbox.wanted(LOOK_AT[kind])
        if topic is None or kind == "e":
            executor.engine.check_events = True
        if topic is None:  # notifications were lost: a timer may have been queued meanwhile
            executor.engine.refresh_due = True
        if isinstance(executor, ThreadedExecutor):  # an inline one runs in its caller only
            executor.run_pending()

    def _poll_requests(self) -> None:
        if self.starter is not None and not (self.mailbox is None or self.mailbox.closed):
            self.starter.poll()  # delayed plans and recurring runs that fell due
        if self.mailbox is not None:
            self.mailbox.poll()
            if self._adopt and not self.mailbox.closed:
                self._adopt = False
                self.cluster.adopt_released()
            if self._look and not self.mailbox.closed:
                self._look = False
                self.cluster.look_around()
