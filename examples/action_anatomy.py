"""Action anatomy, from the Dynflow guide: input and output models and the three phases.

* ``plan`` runs in the caller. Its arguments can be any Python objects; what it passes to
  ``plan_self`` becomes the persisted input (JSON, validated against ``Input``).
* ``run`` runs later on an executor and turns input into output (validated against ``Output``).
* ``finalize`` runs after every run step succeeded, in one database transaction.

Run it: ``python examples/action_anatomy.py``
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from dynaflow import Action, PlanningFailed, World


@dataclass
class Machine:
    """An application object: fine as a plan() argument, never persisted as such."""

    id: int
    name: str


class SubAction(Action):
    def plan(self, machine: Machine) -> None:
        self.plan_self(name=machine.name)  # no Input model: input and output are dicts

    def run(self) -> None:
        print(f"SubAction.run: preparing {self.input['name']}")
        self.output["prepared"] = True


class AnAction(Action):
    class Input(BaseModel):  # optional: checked at plan time, and again before run
        id: int
        name: str

    class Output(BaseModel):  # optional: checked when the output is saved
        uuid: str | None = None

    def plan(self, object_1: Machine, object_2: Machine) -> None:
        # plan_action schedules SubAction as part of this workflow, planning it right away
        self.plan_action(SubAction, object_1)
        # plan_self adds this action's own run and finalize steps, with this input
        self.plan_self(id=object_2.id, name=object_2.name)

    def run(self) -> None:
        print(f"AnAction.run: input id={self.input.id} name={self.input.name!r}")
        self.output.uuid = f"{self.input.name}-{self.input.id}"

    def finalize(self) -> None:
        print(f"AnAction.finalize: {self.output.uuid}")


def main() -> None:
    with World("memory://", executor="inline") as world:
        plan = world.plan(AnAction, Machine(1, "db"), Machine(2, "web"))
        print(f"planned: {plan.state}")
        for kind in ("plan", "run", "finalize"):
            steps = [s.action_class.rsplit(".", 1)[-1] for s in plan.steps if s.kind == kind]
            print(f"  {kind} steps: {', '.join(steps)}")
        print(f"  persisted input: {plan.actions[0].input}")

        done = world.execute(plan.id).result(timeout=10)
        print(f"executed: {done.state} / {done.result}")
        print(f"  output: {done.actions[0].output}")

        try:
            world.trigger(AnAction, Machine(1, "db"), Machine("two", "web"))  # type: ignore[arg-type]
        except PlanningFailed as exc:
            print(f"invalid input: {exc.cause}")


if __name__ == "__main__":
    main()
