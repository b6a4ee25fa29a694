"""An action only some workers can run: they import this module (``--import cluster.extra``);
a worker that does not declines its plans."""

from __future__ import annotations

from dynaflow import Action

from .actions import record


class Extra(Action):
    def run(self) -> None:
        record(self, "start")
        self.output["extra"] = self.input["name"]
        record(self, "end")
