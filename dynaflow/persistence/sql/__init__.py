"""The SQL storage, in focused modules:

* :mod:`.storage` — :class:`SQLStorage`, composed of :mod:`.writes`, :mod:`.reads` and
  :mod:`.leases` (worlds, heartbeats, orphaned plans) over :mod:`.transactions` (the engine, the
  ambient transaction, existence checks);
* :mod:`.statements` — every statement, written once; :mod:`.codec` — values in and out;
* :mod:`.driver` and :mod:`.fastpath` — the same statements run on the driver's cursor.

Engines and connections come from :mod:`dynaflow.persistence.engine`.
"""

from __future__ import annotations

from dynaflow.persistence.engine import connect, make_engine
from dynaflow.persistence.sql.storage import SQLStorage

__all__ = ["SQLStorage", "connect", "make_engine"]
