"""Helpers for testing actions and workflows; a pytest plugin (:mod:`dynaflow.testing.plugin`)
provides them as fixtures.

* Planning: :func:`plan_only` plans without running and returns a :class:`Planned` tree.
* One step: :func:`run_step` and :func:`finalize_step` call one action's ``run`` or
  ``finalize`` as the executor does, with the outputs its input refers to stubbed.
* Whole plans: :func:`run_until_done`, :func:`deliver`, :func:`find_step`.
* Time: :func:`frozen_clock` and :class:`FrozenClock` (freezegun underneath).
* Probes and gates: :class:`Probe`, the shared :data:`probe`, :func:`receiving`.
"""

from dynaflow.testing.clock import REAL_TIME_MODULES, T0, FrozenClock, active_clock, frozen_clock
from dynaflow.testing.driving import deliver, find_step, plan_id_of, run_until_done
from dynaflow.testing.planning import Planned, PlannedAction, plan_only
from dynaflow.testing.probes import WAIT, Probe, probe, receiving
from dynaflow.testing.steps import FIRST, StepRun, Timer, finalize_step, run_step

__all__ = [
    # planning
    "plan_only",
    "Planned",
    "PlannedAction",
    # one step
    "run_step",
    "finalize_step",
    "StepRun",
    "Timer",
    "FIRST",
    # whole plans
    "run_until_done",
    "deliver",
    "find_step",
    "plan_id_of",
    # time
    "frozen_clock",
    "FrozenClock",
    "active_clock",
    "T0",
    "REAL_TIME_MODULES",
    # probes and gates
    "Probe",
    "probe",
    "receiving",
    "WAIT",
]
