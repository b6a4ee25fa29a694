"""The Polling mixin: wait for an external task that has no callback by polling it, without
holding a thread between polls.

Write ``invoke_external_task()`` (start the task, return a JSON handle), ``poll_external_task()``
(return the task's new JSON state) and ``done()`` (look at ``self.external_task``)::

    class Sync(Polling, Action):
        def invoke_external_task(self):
            return {"job": api.start(self.input["repo"])}

        def poll_external_task(self):
            return api.status(self.external_task["job"])

        def done(self):
            return self.external_task["state"] == "finished"

The task handle and the attempt counts live in the step's output (``task`` and
``poll_attempts``), so a step that is restarted polls the task it already started instead of
invoking a second one. With an ``Output`` model, give it those two fields.
"""

from __future__ import annotations

from typing import Any, ClassVar

from dynaflow.exceptions import ConfigurationError, InvalidArgument

#: the event a Polling step sends itself between polls
POLL = "__dynaflow_poll__"


def output_get(action: Any, key: str) -> Any:
    """``key`` of a mixin's state kept in the action's output (a dict or an ``Output`` model)."""
    output = action.output
    return output.get(key) if isinstance(output, dict) else getattr(output, key, None)


def output_set(action: Any, key: str, value: Any, needs: str) -> None:
    """Set ``key`` of the state kept in the action's output; an ``Output`` model without that
    field raises, naming what the mixin (``needs``) wants declared."""
    output = action.output
    if isinstance(output, dict):
        output[key] = value
        return
    try:
        setattr(output, key, value)
    except (AttributeError, ValueError) as exc:
        raise ConfigurationError(
            f"{type(action).__qualname__}.Output needs a field {key!r} for {needs}"
        ) from exc


class Polling:
    #: seconds between polls; the next interval is used every ``attempts_before_next_interval``
    poll_intervals: ClassVar[tuple[float, ...]] = (0.5, 1, 2, 4, 8, 16)
    attempts_before_next_interval: ClassVar[int] = 5
    #: consecutive poll errors tolerated; one more fails the step (a good poll resets the count)
    poll_max_retries: ClassVar[int] = 3
    #: seconds after which the step fails if the task is not done (``None``: no limit)
    timeout: ClassVar[float | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        intervals = cls.poll_intervals
        if not isinstance(intervals, tuple | list) or not intervals:
            raise InvalidArgument(
                f"{cls.__qualname__}.poll_intervals must be a non-empty sequence of seconds"
            )
        if any(isinstance(i, bool) or not isinstance(i, int | float) or i <= 0 for i in intervals):
            raise InvalidArgument(
                f"{cls.__qualname__}.poll_intervals must hold numbers of seconds > 0, "
                f"got {intervals!r}"
            )
        if not isinstance(cls.attempts_before_next_interval, int) or (
            cls.attempts_before_next_interval < 1
        ):
            raise InvalidArgument(f"{cls.__qualname__}.attempts_before_next_interval must be >= 1")
        if not isinstance(cls.poll_max_retries, int) or cls.poll_max_retries < 0:
            raise InvalidArgument(f"{cls.__qualname__}.poll_max_retries must be >= 0")

    # -- to implement ----------------------------------------------------------------------

    def invoke_external_task(self) -> Any:
        """Start the external task; return its handle (JSON), stored as ``external_task``."""
        raise NotImplementedError(f"{type(self).__qualname__} must define invoke_external_task()")

    def poll_external_task(self) -> Any:
        """Ask for the task's state; return the new ``external_task`` (JSON)."""
        raise NotImplementedError(f"{type(self).__qualname__} must define poll_external_task()")

    def done(self) -> bool:
        """Whether ``external_task`` is finished."""
        raise NotImplementedError(f"{type(self).__qualname__} must define done()")

    # -- state kept in output ----------------------------------------------------------------

    @property
    def external_task(self) -> Any:
        return self._get("task")

    @external_task.setter
    def external_task(self, value: Any) -> None:
        self._set("task", value)

    @property
    def poll_attempts(self) -> dict[str, int]:
        attempts = self._get("poll_attempts")
        if not isinstance(attempts, dict):
            attempts = {}
        # an Output model's default (``poll_attempts: dict = {}``) starts empty: fill it in
        if not isinstance(attempts.get("total"), int) or not isinstance(
            attempts.get("failed"), int
        ):
            attempts = {**attempts, "total": attempts.get("total") or 0}
            attempts["failed"] = attempts.get("failed") or 0
            self._set("poll_attempts", attempts)
        return attempts

    def _get(self, key: str) -> Any:
        return output_get(self, key)

    def _set(self, key: str, value: Any) -> None:
        output_set(self, key, value, "Polling (task: Any = None, poll_attempts: dict = {})")

    # -- the run protocol ------------------------------------------------------------------

    def run(self, event: Any = None) -> None:
        if event is None:
            if self.external_task is None:
                self.external_task = self.invoke_external_task()
                if self.timeout is not None:
                    self.schedule_timeout(self.timeout)  # type: ignore[attr-defined]
            # else: run again after a restart: poll the task we already started
        elif event == POLL:
            self._poll()
        else:
            raise InvalidArgument(
                f"{type(self).__qualname__} got an unexpected event {event!r} while polling"
            )
        if self.done():
            return
        self.plan_event(POLL, delay=self.poll_interval())  # type: ignore[attr-defined]
        self.suspend()  # type: ignore[attr-defined]

    def _poll(self) -> None:
        attempts = self.poll_attempts
        attempts["total"] += 1
        try:
            self.external_task = self.poll_external_task()
        except Exception:
            attempts["failed"] += 1
            self._set("poll_attempts", attempts)
            if attempts["failed"] > self.poll_max_retries:
                raise
        else:
            attempts["failed"] = 0
        self._set("poll_attempts", attempts)

    def poll_interval(self) -> float:
        """Seconds until the next poll."""
        index = self.poll_attempts["total"] // self.attempts_before_next_interval
        return float(self.poll_intervals[min(index, len(self.poll_intervals) - 1)])
