"""The benchmark scripts as a user runs them, in smoke-test sizes: they finish and print their
table. No figure is checked (timings depend on the machine)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(script: str, *args: str, timeout: float) -> list[str]:
    """``benchmarks/<script> args`` as a user runs it: its output lines (it must exit 0)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout.splitlines()


@pytest.fixture
def bench_schema_url(pg_admin: Any) -> Iterator[str]:
    """The test server's URL with a schema of this test (the benchmark drops and recreates
    it; dropped here in any case)."""
    import sqlalchemy as sa

    schema = f"dynaflow_bench_{uuid.uuid4().hex[:12]}"
    url = pg_admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_cluster_benchmark_quick_run_prints_its_table(bench_schema_url: str) -> None:
    lines = run_benchmark(
        "cluster.py", "--quick", "--url", bench_schema_url, "--timeout", "120", timeout=840
    )
    output = "\n".join(lines)
    header = next(i for i, line in enumerate(lines) if line.startswith("scenario"))
    assert lines[header].split() == ["scenario", "figure", "target", "met"]
    assert set(lines[header + 1]) <= {"-", " "}
    table = lines[header + 2 :]
    for scenario in ("wide:", "many:", "events:", "handoff:", "sqlite:"):
        assert any(line.startswith(scenario) for line in table), (scenario, output)
    assert "FAILED" not in output


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_console_graph_benchmark_prints_its_table() -> None:
    lines = run_benchmark("console_graph.py", "--sizes", "20", "--repeat", "1", timeout=240)
    assert lines[0].split()[:3] == ["storage", "shape", "steps"]
    rows = [line.split() for line in lines[2:]]
    assert {(row[0], row[1]) for row in rows} == {
        (storage, shape) for storage in ("memory", "sqlite") for shape in ("wide", "deep", "mixed")
    }
    assert all(row[2] == "20" for row in rows)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_core_benchmark_prints_rates_and_cpu_per_step() -> None:
    lines = run_benchmark(
        "core.py",
        *("--backends", "sqlite", "--steps", "40", "--plan-actions", "200", "--plans", "8"),
        timeout=240,
    )
    assert lines[0].split() == [
        "backend",
        "measure",
        "figure",
        "x",
        "raw",
        "CPU/step",
        "(this",
        "process)",
    ]
    steps = [line for line in lines[2:] if "steps/s" in line and "raw SQLAlchemy" not in line]
    assert len(steps) == 3, lines
    # each step figure has its CPU per step, a positive number of microseconds
    assert all(
        line.split()[-1] == "us" and int(line.split()[-2].replace(",", "")) > 0 for line in steps
    )
