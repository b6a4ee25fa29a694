"""Action composition, from the Dynflow guide.

``CreateInfrastructure`` has no ``run`` of its own: its ``plan`` composes ``CreateMachine``
actions. The db and storage machines are created concurrently; the web server runs after both
(a sequence) and receives their uuids through output references, resolved right before it runs.

Run it: ``python examples/create_infrastructure.py``
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dynaflow import Action, World


class CreateMachine(Action):
    class Input(BaseModel):
        name: str
        profile: str
        db_machine: str | None = None
        storage_machine: str | None = None

    class Output(BaseModel):
        uuid: str | None = None

    def plan(self, name: str, profile: str, **deps: Any) -> None:
        self.plan_self(name=name, profile=profile, **deps)

    def run(self) -> None:
        uses = [m for m in (self.input.db_machine, self.input.storage_machine) if m]
        suffix = f" using {', '.join(uses)}" if uses else ""
        print(f"creating {self.input.name} ({self.input.profile}){suffix}")
        self.output.uuid = f"{self.input.name}-{self.input.profile}"


class CreateInfrastructure(Action):
    def plan(self) -> None:
        with self.sequence():
            with self.concurrence():
                db = self.plan_action(CreateMachine, "host1", "db")
                storage = self.plan_action(CreateMachine, "host2", "storage")
            self.plan_action(
                CreateMachine,
                "host3",
                "web_server",
                db_machine=db.output.uuid,  # a reference to a value that does not exist yet
                storage_machine=storage.output.uuid,
            )


def main() -> None:
    # inline: everything runs in this thread, in a fixed order; trigger returns when it is done
    with World("memory://", executor="inline") as world:
        plan = world.trigger(CreateInfrastructure).wait(timeout=10)

    print(f"plan: {plan.state} / {plan.result}")
    names = {a.id: a.input.get("name", "") for a in plan.actions}
    host_of = {s.id: names[s.action_id] for s in plan.run_steps()}
    for step_id, host in sorted(host_of.items()):
        waits = sorted(host_of[before] for before, after in plan.run_edges if after == step_id)
        print(f"  {host} runs after: {', '.join(waits) or '(nothing)'}")
    for action in plan.actions:
        if action.output:
            print(f"  {names[action.id]}: uuid={action.output['uuid']}")


if __name__ == "__main__":
    main()
