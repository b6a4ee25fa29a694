"""Many worlds on one database, as real processes: ``dynaflow worker`` subprocesses (SIGTERM,
SIGKILL, lost connections), a client world in the test process, ``dynaflow plans ...`` operator
commands. The workers import :mod:`.actions` (tests/ is on their PYTHONPATH)."""
