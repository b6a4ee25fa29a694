"""Installing a plugin package extends a core workflow: the test environment has
``tests/plugin_pkg`` installed (README's test command, and .ci/run, install it), whose
``dynaflow.actions`` entry point registers ``AuditMachine``, subscribed to the demo's
``CreateMachine``. A fresh interpreter that never imports the plugin still plans it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from dynaflow import World
    from dynaflow.demo import CreateMachine

    assert "dynaflow_audit_plugin" not in sys.modules
    with World(sys.argv[1]) as world:
        plan = world.trigger(CreateMachine, "host9", "db").wait(timeout=30)
        names = {a.id: a.action_class for a in plan.actions}
        print(json.dumps({
            "state": plan.state, "result": plan.result,
            "steps": [[names[s.action_id], s.kind, s.state] for s in plan.steps],
            "run_ids": {names[s.action_id]: s.id for s in plan.steps if s.kind == "run"},
            "outputs": {names[a.id]: a.output for a in plan.actions},
            "edges": plan.run_edges,
        }))
    """
)


def test_the_plugin_package_is_installed_in_the_test_environment() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="dynaflow.actions")}
    assert found.get("audit") == "dynaflow_audit_plugin.actions", (
        "install the test plugin: pip install -e tests/plugin_pkg (README's test command does)"
    )


def test_an_installed_plugin_is_planned_with_the_core_action(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plugin.db'}"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, url], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout.strip().splitlines()[-1])
    assert (plan["state"], plan["result"]) == ("stopped", "success")
    audit = "dynaflow_audit_plugin.actions.AuditMachine"
    machine = "dynaflow.demo.CreateMachine"
    assert [audit, "run", "success"] in plan["steps"]
    uuid = plan["outputs"][machine]["uuid"]
    assert plan["outputs"][audit] == {"audited": f"audited {uuid}"}
    # each subscriber (the demo's own RegisterMonitoring, and the plugin's AuditMachine)
    # references the trigger's output: one edge each, from the machine
    ids = plan["run_ids"]
    assert [ids[machine], ids[audit]] in plan["edges"]
    assert all(edge[0] == ids[machine] for edge in plan["edges"])
