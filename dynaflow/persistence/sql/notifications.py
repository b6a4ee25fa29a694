"""PostgreSQL notifications between worlds: ``NOTIFY`` payloads (topics joined under the
server's size limit) and :class:`Listener`, which listens on a connection of its own."""

from __future__ import annotations

import logging
import os
import select as io
import threading
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.engine import URL

log = logging.getLogger("dynaflow.storage")

#: the PostgreSQL notification channel of dynaflow's worlds
CHANNEL = "dynaflow"
#: longest NOTIFY payload sent at once (PostgreSQL's limit is 8000 bytes)
PAYLOAD = 7000


def payloads(topics: Iterable[str]) -> list[str]:
    """Topics joined by newlines into payloads PostgreSQL accepts (each under 8000 bytes)."""
    joined: list[str] = []
    current: list[str] = []
    size = 0
    for topic in dict.fromkeys(topics):  # once each, in order
        if current and size + len(topic) + 1 > PAYLOAD:
            joined.append("\n".join(current))
            current, size = [], 0
        current.append(topic)
        size += len(topic) + 1
    if current:
        joined.append("\n".join(current))
    return joined


class Listener:
    """``LISTEN`` on a connection of its own, on a thread of its own: each topic notified goes
    to ``callback``. A lost connection is opened again (with a growing pause); after that,
    ``callback(None)``: notifications sent meanwhile are lost, so the world looks at
    everything."""

    def __init__(self, url: URL, callback: Callable[[str | None], None]) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._callback = callback
        self._stop = threading.Event()
        self._conn: Any = None
        self._ready = threading.Event()
        self._wakeup = os.pipe()
        self._thread = threading.Thread(target=self._loop, name="dynaflow-listener", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _loop(self) -> None:
        import psycopg

        pause = 0.1
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10) as conn:
                    self._conn = conn
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._ready.set()
                    if not first:
                        self._callback(None)
                    first, pause = False, 0.1
                    while not self._stop.is_set():
                        # wait for the connection's socket or for close(), whichever is first
                        ready, _, _ = io.select([conn.fileno(), self._wakeup[0]], [], [], 5.0)
                        if self._wakeup[0] in ready:
                            return
                        for note in conn.notifies(timeout=0.0):
                            for topic in note.payload.split("\n"):
                                self._callback(topic)
            except Exception as exc:  # a lost connection: open another
                if self._stop.is_set():
                    return
                log.warning("notification listener lost its connection (%s); reconnecting", exc)
                self._ready.set()
                self._stop.wait(pause)
                pause = min(pause * 2, 5.0)
            finally:
                self._conn = None

    def close(self) -> None:
        self._stop.set()
        os.write(self._wakeup[1], b"x")
        self._thread.join(timeout=5)
        for fd in self._wakeup:
            os.close(fd)
