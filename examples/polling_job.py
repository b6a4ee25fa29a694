"""Polling an external job that has no callback, with the ``Polling`` mixin.

``SyncRepository`` starts a job in a (fake) job API and then polls it until it is finished.
Between polls the step is ``suspended``: it holds no thread, and the next poll is a timer in the
database. The job handle and the poll counts live in the step's output, so a step run again
after a restart polls the job it started instead of starting a second one. One poll fails on
the way; up to ``poll_max_retries`` consecutive poll errors are tolerated.

Run it: ``python examples/polling_job.py``
"""

from __future__ import annotations

from typing import Any

from dynaflow import Action, Polling, World


class FakeJobAPI:
    """A job service without callbacks: start a job, then ask how it is doing."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def start(self, repository: str) -> str:
        job = f"job-{len(self.calls) + 1}"
        self.calls[job] = 0
        return job

    def status(self, job: str) -> dict[str, Any]:
        self.calls[job] += 1
        calls = self.calls[job]
        if calls == 2:
            raise ConnectionError("job API unreachable")
        progress = min(100, 25 * calls)
        return {
            "job": job,
            "state": "finished" if progress == 100 else "running",
            "progress": progress,
        }


API = FakeJobAPI()


class SyncRepository(Polling, Action):
    # seconds between polls; the default is (0.5, 1, 2, 4, 8, 16), one step every 5 polls
    poll_intervals = (0.05, 0.1)
    attempts_before_next_interval = 2
    poll_max_retries = 3  # consecutive poll errors tolerated (the default)
    timeout = 30  # fail the step if the job is not finished by then

    def invoke_external_task(self) -> dict[str, Any]:
        job = API.start(self.input["repository"])
        print(f"started {job} to sync {self.input['repository']}")
        return {"job": job, "state": "queued", "progress": 0}

    def poll_external_task(self) -> dict[str, Any]:
        attempt = self.poll_attempts["total"]
        try:
            status = API.status(self.external_task["job"])
        except ConnectionError as exc:
            print(f"poll {attempt}: {exc} (tolerated)")
            raise
        print(f"poll {attempt}: {status['state']} {status['progress']}%")
        return status

    def done(self) -> bool:
        return bool(self.external_task["state"] == "finished")


def main() -> None:
    with World("memory://") as world:
        plan = world.trigger(SyncRepository, repository="dynaflow").wait(timeout=30)

    print(f"plan: {plan.state} / {plan.result}")
    (step,) = plan.run_steps()
    output = plan.action(step.action_id).output
    print(f"task: {output['task']}")
    print(f"poll attempts: {output['poll_attempts']}")


if __name__ == "__main__":
    main()
