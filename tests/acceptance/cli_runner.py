"""Running the ``dynaflow`` command in this process (click's runner): fast, and under the test's
frozen clock when there is one. Output is piped, as in a script: rich sees no terminal."""

from __future__ import annotations

import json
import re
from typing import Any

from click.testing import CliRunner, Result

from dynaflow.cli import main

#: an escape sequence or any C0/C1 control character but newline
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def run(*args: str, columns: int = 200, env: dict[str, str] | None = None) -> Result:
    """``dynaflow ARGS`` in a terminal ``columns`` wide (``DYNAFLOW_URL`` unset unless ``env``
    sets it)."""
    environment: dict[str, str | None] = {"COLUMNS": str(columns), "DYNAFLOW_URL": None}
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        environment[name] = None
    environment.update(env or {})
    return CliRunner().invoke(main, list(args), env=environment, catch_exceptions=False)


def run_json(*args: str, env: dict[str, str] | None = None) -> Any:
    """``dynaflow ARGS --json``, parsed; the command must succeed and print only JSON."""
    result = run(*args, "--json", env=env)
    assert result.exit_code == 0, result.output
    assert not CONTROL.search(result.stdout), "styling or control characters in --json output"
    return json.loads(result.stdout)
