"""``dynaflow worker --metrics-port``: the worker serves Prometheus metrics of the plans it runs
at ``/metrics``; a port already in use is a one-line error before the worker starts."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynaflow import World

from .actions import Shape, Value
from .harness import WAIT, Database, dynaflow, environment, one_line_error, stop, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return ""


@pytest.fixture
def worker_with_metrics(url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    log = tmp_path / "worker.log"
    (tmp_path / "runs").mkdir()
    args = [sys.executable, "-m", "dynaflow.cli", "worker", "--url", url]
    args += ["--import", "cluster.actions", "--metrics-port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            args,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment(tmp_path / "runs"),
        )
    try:
        yield process, port
    finally:
        stop(process)


def test_a_worker_serves_the_metrics_of_the_plans_it_runs(
    worker_with_metrics: tuple[subprocess.Popen[bytes], int], client: World, db: Database
) -> None:
    process, port = worker_with_metrics
    wait_until(lambda: scrape(port), bool, "the metrics endpoint")
    wait_until(db.worlds, bool, "the worker's world")

    spec = ["seq", ["v", "a", {"n": 1}], ["v", "b", {"n": 2, "refs": 1}]]
    assert client.trigger(Shape, spec).wait(WAIT).result == "success"

    value = Value.action_class_name
    success = f'dynaflow_steps_total{{action_class="{value}",queue="default",state="success"}} 2.0'
    body = wait_until(lambda: scrape(port), lambda text: success in text, "two steps counted")
    assert 'dynaflow_plans_total{result="success",state="stopped"} 1.0' in body
    assert (
        f'dynaflow_step_duration_seconds_count{{action_class="{value}",queue="default"}} 2.0'
        in (body)
    )
    assert "python_info" in body  # prometheus_client's own process metrics come along

    process.send_signal(signal.SIGTERM)
    assert process.wait(WAIT) == 0


def test_a_metrics_port_in_use_is_a_one_line_error(url: str, db: Database, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = dynaflow(
            "worker", "--url", url, "--import", "cluster.actions", "--metrics-port", str(port),
            directory=tmp_path,
        )  # fmt: skip
    line = one_line_error(result, 2)  # bad input (docs/cli.md)
    assert f"cannot serve metrics on 0.0.0.0:{port}: Address already in use" in line
    assert "choose another port" in line
    assert db.worlds() == {}  # refused before the world started
