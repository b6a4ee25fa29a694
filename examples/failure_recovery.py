"""A step fails, an operator skips it and resumes the plan, through the Python API.

``Release`` builds a package, then uploads its documentation and publishes its image at the
same time, then announces the documentation and notifies the team. The documentation server
is down: ``UploadDocs`` fails, the other branch goes on, and once nothing more can move the plan
is ``paused`` with result ``error``. The operator decides the documentation can wait and skips
the failed step: ``AnnounceDocs`` (it consumes the docs URL) is skipped with it, while
``Notify`` (merely ordered after it) still runs when the plan is resumed. The plan ends
``stopped`` with result ``warning``: it finished, but not everything was done.

Run it: ``python examples/failure_recovery.py``
"""

from __future__ import annotations

from dynaflow import Action, World


class Build(Action):
    def run(self) -> None:
        print(f"Build: building release {self.input['version']}")
        self.output["package"] = f"app-{self.input['version']}.tar.gz"


class UploadDocs(Action):
    def run(self) -> None:
        print("UploadDocs: uploading to docs.example.com")
        raise ConnectionError("docs.example.com is unreachable")

    def on_skip(self) -> None:
        # called before an operator (or a SKIP rescue strategy) skips this step; raising
        # here would refuse the skip and change nothing
        print("UploadDocs.on_skip: the docs will be uploaded by hand")


class PublishImage(Action):
    def run(self) -> None:
        print(f"PublishImage: publishing {self.input['package']}")
        self.output["image"] = f"registry.example.com/app:{self.input['version']}"


class AnnounceDocs(Action):
    def run(self) -> None:
        print(f"AnnounceDocs: the docs are at {self.input['url']}")


class Notify(Action):
    def run(self) -> None:
        print(f"Notify: released {self.input['image']}")

    def finalize(self) -> None:
        # finalize runs once every run step has succeeded or been skipped (and again in full
        # if a plan is resumed after a finalize error: keep it idempotent)
        print("Notify.finalize: release recorded")


class Release(Action):
    def plan(self, version: str) -> None:
        with self.sequence():
            build = self.plan_action(Build, version=version)
            with self.concurrence():
                docs = self.plan_action(UploadDocs, version=version)
                image = self.plan_action(
                    PublishImage, version=version, package=build.output["package"]
                )
            with self.concurrence():
                self.plan_action(AnnounceDocs, url=docs.output["url"])
                self.plan_action(Notify, image=image.output["image"])


def show(world: World, plan_id: str) -> None:
    plan = world.get_plan(plan_id)
    print(f"plan: {plan.state} / {plan.result}")
    for step in plan.run_steps():
        name = step.action_class.rsplit(".", 1)[-1]
        error = f" ({step.error})" if step.error else ""
        print(f"  {name}: {step.state}{error}")


def main() -> None:
    # inline: everything runs in this thread, in a fixed order, so the output is always the same
    with World("memory://", executor="inline") as world:
        plan = world.trigger(Release, "1.2").wait(timeout=10)
        show(world, plan.id)

        (failed,) = [step for step in plan.run_steps() if step.state == "error"]
        print(f"skipping step {failed.id}")
        world.skip(plan.id, failed.id)
        show(world, plan.id)

        print("resuming")
        plan = world.resume(plan.id).result(timeout=10)
        show(world, plan.id)

        events = [h.event for h in plan.history if h.step_id == failed.id]
        print(f"history of step {failed.id}: {', '.join(events)}")


if __name__ == "__main__":
    main()
