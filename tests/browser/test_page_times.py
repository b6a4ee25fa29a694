"""How long the page of a big plan takes to load in the browser: a 2,000-step plan's next to a
20-step plan's, from the navigation's start to the load event. Measured and printed (and
written to ``page-times.txt`` in the test's temporary folder), never asserted: times depend on
the machine."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .actions import Wide
from .conftest import WAIT, Stack

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

#: loads of each page measured (after one to warm up)
LOADS = 3

TIMING = """() => {
    const [n] = performance.getEntriesByType("navigation");
    return n && n.loadEventEnd > 0 ? {
        load: n.loadEventEnd - n.startTime,
        server: n.responseStart - n.requestStart,
        transfer: n.responseEnd - n.responseStart,
        dom: n.domContentLoadedEventEnd - n.responseEnd,
        bytes: n.transferSize,
    } : null;
}"""


def timing(page: Any) -> dict[str, float]:
    """The navigation's timings (ms), once its load event has ended."""
    deadline = time.monotonic() + WAIT
    while True:
        found = page.evaluate(TIMING)
        if found is not None:
            return dict(found)
        assert time.monotonic() < deadline, "the page's load event did not end"
        time.sleep(0.02)


def measure(page: Any, path: str, check: Any) -> dict[str, float]:
    """The median of :data:`LOADS` loads of ``path`` (``check(page)`` after each)."""
    loads = []
    for n in range(LOADS + 1):
        page.goto(path)
        check(page)
        if n:  # the first warms up the server and the browser
            loads.append(timing(page))
    return {key: statistics.median(load[key] for load in loads) for key in loads[0]}


def test_page_times_of_a_20_and_a_2000_step_plan(stack: Stack, page: Any, tmp_path: Path) -> None:
    small = stack.client.trigger(Wide, 20).wait(WAIT)
    big = stack.client.trigger(Wide, 2000).wait(WAIT)
    assert (small.result, big.result) == ("success", "success")

    def steps(count: int, graph: bool) -> Any:
        def check(page: Any) -> None:
            runs = page.locator("[data-testid=step-row][data-kind=run][data-state=success]")
            expect(runs).to_have_count(count)
            expect(page.get_by_test_id("run-graph" if graph else "graph-on-demand")).to_be_visible()
            expect(page.get_by_test_id("plan-progress-text")).to_have_text(f"{count}/{count} done")

        return check

    figures = {
        "20 steps": measure(page, f"/plans/{small.id}", steps(20, graph=True)),
        "2,000 steps": measure(page, f"/plans/{big.id}", steps(2000, graph=False)),
        "2,000 steps, graph drawn": measure(
            page, f"/plans/{big.id}?graph=1", steps(2000, graph=True)
        ),
    }
    lines = [
        f"plan page load in chromium, median of {LOADS} (ms: navigation start to load event; "
        "server: request to first byte; dom: last byte to DOMContentLoaded)"
    ]
    for name, f in figures.items():
        lines.append(
            f"{name:>26}: load {f['load']:7.0f} ms  server {f['server']:6.0f} ms  "
            f"transfer {f['transfer']:5.0f} ms  dom {f['dom']:5.0f} ms  "
            f"{f['bytes'] / 1024:7.0f} KiB"
        )
    report = "\n".join(lines)
    (tmp_path / "page-times.txt").write_text(report + "\n")
    print("\n" + report + f"\n(written to {tmp_path / 'page-times.txt'})")
