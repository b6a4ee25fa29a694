"""Executors: the scheduler core (engine), a thread-pool executor and an inline one."""

from dynaflow.executor.futures import PlanFuture
from dynaflow.executor.inline import InlineExecutor
from dynaflow.executor.threaded import ThreadedExecutor

#: what a world with an executor runs
Executor = InlineExecutor | ThreadedExecutor

__all__ = ["Executor", "InlineExecutor", "PlanFuture", "ThreadedExecutor"]
