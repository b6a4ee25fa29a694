"""``dynaflow console``: what it serves and how (uvicorn is replaced here by a stand-in that
records its call; one slow test runs the real command)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from dynaflow.cli import main
from dynaflow.cli_support import Exit


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    import uvicorn

    calls: list[dict[str, Any]] = []

    def run(app: Any, **options: Any) -> None:
        client = TestClient(app, follow_redirects=False)
        options["plans"] = client.get("/plans").status_code
        options["api"] = client.get("/api/plans").status_code
        options["read_only"] = 'data-testid="read-only"' in client.get("/signin").text
        calls.append(options)

    monkeypatch.setattr(uvicorn, "run", run)
    return calls


def database(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "console.db"
    path.write_bytes(sqlite_template.read_bytes())
    return f"sqlite:///{path}"


def test_defaults_local_and_open(
    served: list[dict[str, Any]], tmp_path: Path, sqlite_template: Path
) -> None:
    result = CliRunner().invoke(main, ["console", "--url", database(tmp_path, sqlite_template)])
    assert result.exit_code == 0, result.output
    (call,) = served
    assert (call["host"], call["port"]) == ("127.0.0.1", 8808)
    assert (call["plans"], call["api"]) == (200, 200)
    assert "open: no token" in result.output


def test_token_from_the_environment_and_read_only(
    served: list[dict[str, Any]], tmp_path: Path, sqlite_template: Path
) -> None:
    result = CliRunner().invoke(
        main,
        ["console", "--url", database(tmp_path, sqlite_template), "--read-only", "--port", "9000"],
        env={"DYNAFLOW_CONSOLE_TOKEN": "from-env-token"},
    )
    assert result.exit_code == 0, result.output
    (call,) = served
    assert (call["plans"], call["api"], call["port"]) == (303, 401, 9000)
    assert "token required" in result.output and "read-only" in result.output


def test_refuses_the_network_without_a_token(
    served: list[dict[str, Any]], tmp_path: Path, sqlite_template: Path
) -> None:
    url = database(tmp_path, sqlite_template)
    result = CliRunner().invoke(main, ["console", "--url", url, "--host", "0.0.0.0"])
    assert result.exit_code == Exit.BAD_INPUT
    assert "without a token: pass --token" in result.output
    assert served == []
    result = CliRunner().invoke(
        main, ["console", "--url", url, "--host", "0.0.0.0", "--token", "abc-123"]
    )
    assert result.exit_code == 0
    assert served[0]["host"] == "0.0.0.0"


def test_no_database_no_console(served: list[dict[str, Any]], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["console", "--url", f"sqlite:///{tmp_path / 'none.db'}"])
    assert result.exit_code == Exit.BAD_INPUT
    assert "no database at" in result.output
    assert not (tmp_path / "none.db").exists()


def test_a_module_that_cannot_be_imported(
    served: list[dict[str, Any]], tmp_path: Path, sqlite_template: Path
) -> None:
    url = database(tmp_path, sqlite_template)
    result = CliRunner().invoke(main, ["console", "--url", url, "--import", "no_such_module_x"])
    assert result.exit_code == Exit.BAD_INPUT
    assert "cannot import 'no_such_module_x'" in result.output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_the_real_command_serves_pages(tmp_path: Path, sqlite_template: Path) -> None:
    url = database(tmp_path, sqlite_template)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dynaflow.cli", "console", "--url", url, "--port", str(port),
         "--token", "real-token-1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/plans",
                    headers={"Authorization": "Bearer real-token-1"},
                )
                with urllib.request.urlopen(request, timeout=5) as answer:
                    assert answer.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "the console did not start"
                time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/plans", timeout=5)
        assert refused.value.code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
