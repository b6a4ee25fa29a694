"""Worlds on one database: registration, heartbeats, leases, and the takeover of plans whose
world is gone (its lease expired) or released them (it shut down).

Each executor world has a row in the worlds table with its own lease, and beats its heartbeat
every lease / 3. A world counts as dead once its last heartbeat plus its own lease has passed,
judged on the storage's clock (the database server's), never on the observer's lease or wall
clock: any other executor world then takes its running plans over (the engine re-runs or
errors their interrupted steps). A world that finds its own row gone was declared dead: it
drops its plans and goes on under a new id. Writes are fenced (see ``Batch.owner``): a world
that lost a plan cannot change it any more, even if it does not know yet.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from datetime import datetime, timedelta

from dynaflow.exceptions import ConcurrentModification, DynaflowError
from dynaflow.executor import Executor, ThreadedExecutor
from dynaflow.membership import cannot_run
from dynaflow.persistence.base import WorldRow
from dynaflow.services import Services

log = logging.getLogger("dynaflow.cluster")


#: answered requests are deleted after this long (their askers read them long before)
KEEP_ANSWERS = timedelta(hours=1)
#: seconds between two purges of old answers by one world
PURGE_EVERY = 300.0


class Cluster:
    """This world's membership: ``lease`` seconds without a heartbeat and it counts as dead."""

    def __init__(
        self, services: Services, lease: float, queues: Mapping[str, int] | None = None
    ) -> None:
        self.services = services
        self.lease = lease
        self.queues = dict(queues or {"default": 1})
        #: plans this world cannot run (it said so once), so it does not say it every beat
        self._cannot: set[str] = set()
        self.executor: Executor | None = None
        self._next_beat = 0.0
        self._next_purge = time.monotonic() + PURGE_EVERY
        self._incarnation = 0
        self._kind: str | None = None

    def join(self, kind: str) -> None:
        """Register this world as an executor world of ``kind``."""
        self._kind = kind
        self._register(kind)

    def start(self, executor: Executor) -> None:
        """With the executor running: beat, adopt released plans, take over dead worlds'
        plans."""
        self.executor = executor
        self.maintain(force=True)  # adopts released plans too

    def adopt_released(self) -> None:
        """Take over the plans a world released when it shut down (running, no owner)."""
        assert self.executor is not None
        if self.executor.engine.stopping:
            return
        adopted = False
        for plan_id in self.services.storage.released_plans():
            if self._can_run(plan_id):
                log.info("adopting plan %s (released by a world that shut down)", plan_id)
                self.executor.engine.take_over(plan_id, None)
                adopted = True
        if adopted:
            self.executor.run_pending()

    def maintain(self, force: bool = False) -> None:
        """Heartbeat, and take over the plans of worlds whose lease expired or that released
        them when they shut down. Executors call it on their tick; it acts every lease / 3 (at
        once with ``force``)."""
        executor = self.executor
        if executor is None:
            return
        clock = time.monotonic()
        if not force and clock < self._next_beat:
            return
        self._next_beat = clock + self.lease / 3
        storage, engine = self.services.storage, executor.engine
        at = storage.now()
        if not storage.heartbeat(self.services.id, at, self.lease):
            self._declared_dead()
        taken = False
        # plans of dead worlds, and plans released by worlds that shut down while this one
        # ran (not by one shutting down itself: it would only release them again)
        orphaned = [] if engine.stopping else storage.orphaned_plans(at)
        for plan_id, owner in orphaned:
            if owner != self.services.id and self._can_run(plan_id):
                if owner is None:
                    log.info("adopting plan %s (released by a world that shut down)", plan_id)
                else:
                    log.warning("taking over plan %s from world %s (lease expired)", plan_id, owner)
                engine.take_over(plan_id, owner)
                taken = True
        worlds = storage.worlds()
        for world in worlds:
            if world.id != self.services.id and world.expires_at < at:
                log.warning(
                    "world %s is dead (no heartbeat since %s)", world.id, world.heartbeat_at
                )
                with storage.transaction():  # its requests go to the others with its row
                    storage.unregister_world(world.id)
                    storage.release_requests(world.id)
        if clock >= self._next_purge:  # old answers go now and then, not on every beat
            self._next_purge = clock + PURGE_EVERY
            storage.purge_requests(at - KEEP_ANSWERS)
        self._look_around(at, worlds)
        self.refresh_limits()
        if taken:
            executor.run_pending()

    def look_around(self) -> None:
        """Another world came or went: see which threads the others have now."""
        storage = self.services.storage
        self._look_around(storage.now(), storage.worlds())

    def _look_around(self, at: datetime, worlds: list[WorldRow]) -> None:
        """Tell the engine the threads other live worlds have per queue: steps of its plans
        may be offered to them (only where notifications reach them)."""
        executor = self.executor
        if executor is None or not isinstance(executor, ThreadedExecutor):
            return
        if not self.services.storage.notifies:
            return
        elsewhere: dict[str, int] = {}
        for world in worlds:
            if world.id != self.services.id and world.expires_at >= at:
                for queue, size in (world.queues or {}).items():
                    if world.executor == "threads":
                        elsewhere[queue] = elsewhere.get(queue, 0) + size
        executor.engine.elsewhere = elsewhere

    def refresh_limits(self) -> None:
        """Tell the engine which queues have a cluster-wide limit (as stored)."""
        if self.executor is not None:
            limits = self.services.storage.queue_limits()
            self.executor.engine.limited = frozenset(q for q, n in limits.items() if n)

    def _can_run(self, plan_id: str) -> bool:
        """Whether this world can run the plan (its classes import, its queues are served)."""
        try:
            why = cannot_run(self.services.storage.load_plan(plan_id, history=False), self.queues)
        except DynaflowError:
            return False
        if why is not None and plan_id not in self._cannot:
            self._cannot.add(plan_id)
            log.info(
                "world %s leaves plan %s to another world: it %s", self.services.id, plan_id, why
            )
        return why is None

    def leave(self) -> None:
        """Unregister (after shutdown): plans still owned, whose steps outlived the shutdown
        timeout, are taken over at once by the others; requests this world took and did not
        answer (a cancel waiting for such a step, say), or that were addressed to it, go to
        the others (no world would release them once its row is gone)."""
        storage = self.services.storage
        with storage.transaction():
            storage.unregister_world(self.services.id)
            storage.release_requests(self.services.id)
            storage.notify(["w *"])

    def _declared_dead(self) -> None:
        """Another world declared this one dead and takes (or took) over the plans owned under
        the old id. Drop them here and carry on under a new id, so that whatever a failed
        takeover left behind is still seen as orphaned (never owned by a live world)."""
        assert self.executor is not None
        old = self.services.id
        self._incarnation += 1
        self.services.id = f"{old.split('~')[0]}~{self._incarnation}"
        log.error(
            "world %s missed its lease and was declared dead; it stops running its plans "
            "(other worlds take them over) and goes on as %s",
            old,
            self.services.id,
        )
        engine = self.executor.engine
        lost = ConcurrentModification(f"world {old} lost its plans to another world")
        self.executor.call(lambda: engine.fail_all(lost))
        self._register(self._kind)

    def _register(self, kind: str | None) -> None:
        storage = self.services.storage
        at = storage.now()
        with storage.transaction():  # the others see this world's threads at once
            storage.notify(["w *"])
            storage.register_world(
                WorldRow(
                    self.services.id,
                    at,
                    at,
                    socket.gethostname(),
                    os.getpid(),
                    kind,
                    self.lease,
                    self.queues,
                )
            )
