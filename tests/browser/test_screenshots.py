"""A screenshot of each page of the console (1280x800 PNGs), on plans in every state: the ones
docs/console.md shows. They go to the test's temporary folder, or to the folder
``DYNAFLOW_SCREENSHOTS`` names (``DYNAFLOW_SCREENSHOTS=docs/console`` renews the docs')."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .actions import Nightly, Release, Weekly
from .conftest import VIEWPORT, ContextFactory, Stack

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PAGES = ("plans", "plan", "step", "worlds", "bulk", "signin")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_a_screenshot_of_each_page(
    stack: Stack, page: Any, new_context: ContextFactory, tmp_path: Path
) -> None:
    target = Path(os.environ.get("DYNAFLOW_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    fix, gate = stack.file("fix"), stack.file("gate")
    client = stack.client
    finished = [client.trigger(Release).plan_id, client.trigger(Weekly).plan_id]
    paused = client.trigger(Release, needs={"deploy api": fix}).plan_id
    nightly = [client.trigger(Nightly, needs={"build": fix}).plan_id for _ in range(3)]
    running = client.trigger(Release, gates={"deploy web": gate}).plan_id
    for plan_id in finished:
        stack.wait_for(plan_id, "stopped", "success")
    for plan_id in [paused, *nightly]:
        stack.wait_for(plan_id, "paused", "error")
    api = stack.db.run_steps(paused)["deploy api"].id
    shot = lambda name: page.screenshot(path=target / f"{name}.png")  # noqa: E731

    page.goto("/plans")
    expect(page.get_by_test_id("plan-row")).to_have_count(7)
    expect(page.locator(f'[data-testid=plan-row][data-plan-id="{running}"]')).to_have_attribute(
        "data-state", "running"
    )
    shot("plans")

    page.goto(f"/plans/{paused}")
    expect(page.get_by_test_id("run-graph").locator(".step-link")).to_have_count(4)
    shot("plan")

    page.goto(f"/plans/{paused}?step={api}#step")
    expect(page.get_by_test_id("step-traceback")).to_contain_text("FileNotFoundError")
    page.get_by_test_id("step-panel").scroll_into_view_if_needed()
    shot("step")

    page.goto("/worlds")
    world = page.locator(f'[data-testid=world-row][data-world-id="{stack.worker.world_id}"]')
    expect(world.get_by_test_id("running-steps")).to_have_text("1")
    expect(page.locator('[data-testid=queue-row][data-queue="default"]')).to_be_visible()
    shot("worlds")

    page.goto("/plans?state=paused&action=browser.actions.Nightly")
    page.get_by_test_id("bulk-action").select_option("resume")
    page.get_by_test_id("bulk-preview").click()
    expect(page.get_by_test_id("bulk-applicable")).to_have_text("3")
    Path(fix).touch()
    page.get_by_test_id("bulk-confirm").click()
    expect(page.locator("[data-testid=bulk-result][data-ok=true]")).to_have_count(3)
    shot("bulk")

    signin = new_context(stack.main, sign_in=False).new_page()
    signin.goto("/plans")
    expect(signin.get_by_test_id("signin-form")).to_be_visible()
    signin.screenshot(path=target / "signin.png")

    Path(gate).touch()
    stack.wait_for(running, "stopped", "success")
    for name in PAGES:
        size = png_size(target / f"{name}.png")
        assert size == (VIEWPORT["width"], VIEWPORT["height"]), (name, size)
    print(f"screenshots in {target}")
