"""Subscriptions, from the Dynflow guide.

``APluginAction`` subscribes to ``ACoreAppAction``: whenever the core action is planned, the
plugin action is planned right after it, with the same arguments. It reads the trigger's output
through a reference, which makes it run after the core action. (A real plugin package registers
its module in the ``dynaflow.actions`` entry-point group so that installing it is enough.)

Run it: ``python examples/subscriptions.py``
"""

from __future__ import annotations

from dynaflow import Action, World


# -- the core application ---------------------------------------------------------------------
class AnotherCoreAppAction(Action):
    def plan(self, argument: str) -> None:
        self.plan_self(argument=argument)

    def run(self) -> None:
        print(f"Running another core action: {self.input['argument']}")


class ACoreAppAction(Action):
    """Can be extended by plugins without doing anything to support it."""

    def plan(self, arguments: list[str]) -> None:
        self.plan_self(args=arguments)
        self.plan_action(AnotherCoreAppAction, arguments[0])

    def run(self) -> None:
        print(f"Running core action: {self.input['args']}")
        self.output.update(success=True)


# -- a plugin ---------------------------------------------------------------------------------
class APluginAction(Action):
    subscribe = ACoreAppAction  # plan this action whenever ACoreAppAction is planned

    def plan(self, arguments: list[str]) -> None:
        # the same arguments as ACoreAppAction.plan; the trigger's output is a reference
        trigger = self.triggering_action
        assert trigger is not None
        self.plan_self(args=arguments, trigger_success=trigger.output["success"])

    def run(self) -> None:
        print(f"Running plugin action: {self.input['args']}")
        if self.input["trigger_success"]:
            self.output["message"] = "trigger succeeded"


def main() -> None:
    with World("memory://", executor="inline") as world:
        plan = world.trigger(ACoreAppAction, ["a", "b"]).wait(timeout=10)

    print(f"plan: {plan.state} / {plan.result}")
    names = {a.id: a.action_class.rsplit(".", 1)[-1] for a in plan.actions}
    for action in plan.actions:
        how = "planned by " if action.trigger_id is None else "subscribed to "
        origin = action.trigger_id or action.parent_id
        print(f"  {names[action.id]}: {how + names[origin] if origin else 'triggered'}")
    plugin = next(a for a in plan.actions if names[a.id] == "APluginAction")
    print(f"plugin output: {plugin.output}")


if __name__ == "__main__":
    main()
