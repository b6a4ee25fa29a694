"""The console's run graph: nested sequence/concurrence layout, output-reference arrows, steps
coloured by the state a real run left them in, everything stored shown as text, the same SVG
for the same plan."""

from __future__ import annotations

import dataclasses
import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from dynaflow import Action, ExecutionPlan, StepError, StepState, World, flows
from dynaflow.console.graph import (
    GRAPH_STEP_LIMIT,
    STATE_COLOURS,
    output_references,
    render_run_graph,
)

WAIT = 10.0
SVG = "{http://www.w3.org/2000/svg}"


class Leaf(Action):
    """Outputs ``value`` (which may have come through a reference); fails when told to."""

    def run(self) -> None:
        if self.input.get("fail"):
            raise RuntimeError(self.input["fail"])
        self.output["value"] = self.input.get("value", self.input["name"])


class Shape(Action):
    """Plans ``spec``: a name is a :class:`Leaf`; ``["seq", ...]`` / ``["con", ...]`` are
    scopes. ``refs={"e": "a"}`` gives e's input the output of a; ``fails={"b": "msg"}``."""

    label = "shape <b>&amp; co"

    def plan(
        self, spec: Any, refs: dict[str, str] | None = None, fails: dict[str, str] | None = None
    ) -> None:
        self._planned: dict[str, Any] = {}
        self._build(spec, refs or {}, fails or {})

    def _build(self, spec: Any, refs: dict[str, str], fails: dict[str, str]) -> None:
        if isinstance(spec, str):
            extra: dict[str, Any] = {"fail": fails[spec]} if spec in fails else {}
            if spec in refs:
                extra["value"] = self._planned[refs[spec]].output.value
            self._planned[spec] = self.plan_action(Leaf, name=spec, **extra)
            return
        scope, *children = spec
        with self.sequence() if scope == "seq" else self.concurrence():
            for child in children:
                self._build(child, refs, fails)


class Nothing(Action):
    """Plans nothing: no run step at all."""

    def plan(self) -> None:
        pass


@pytest.fixture
def world() -> Iterator[World]:
    with World("memory://", executor="inline") as world:
        yield world


def run(world: World, spec: Any, **options: Any) -> ExecutionPlan:
    plan = world.trigger(Shape, spec, **options).wait(timeout=WAIT)
    return world.get_plan(plan.id)


def href(step_id: int) -> str:
    return f"/plans/p/steps/{step_id}"


def draw(plan: ExecutionPlan) -> ET.Element:
    """The plan's graph, parsed (it must be well-formed XML)."""
    svg = ET.fromstring(render_run_graph(plan, step_href=href))
    assert svg.tag == f"{SVG}svg"
    return svg


def ids(plan: ExecutionPlan) -> dict[str, int]:
    """Run step id per leaf name."""
    actions = {a.id: a for a in plan.actions}
    return {actions[s.action_id].input["name"]: s.id for s in plan.run_steps()}


def step_groups(svg: ET.Element) -> dict[int, ET.Element]:
    return {
        int(g.get("data-step-id", "")): g for g in svg.iter(f"{SVG}g") if "data-step-id" in g.attrib
    }


Box = tuple[int, int, int, int]  # left, top, right, bottom


def boxes(svg: ET.Element) -> dict[int, Box]:
    found = {}
    for step_id, group in step_groups(svg).items():
        rect = group.find(f"{SVG}rect")
        assert rect is not None
        x, y, w, h = (int(rect.get(key, "")) for key in ("x", "y", "width", "height"))
        found[step_id] = (x, y, x + w, y + h)
    return found


def extent(flow: flows.Flow, at: dict[int, Box]) -> Box:
    """The box around every step of ``flow``."""
    members = [at[step] for step in _all(flow)]
    return (
        min(b[0] for b in members),
        min(b[1] for b in members),
        max(b[2] for b in members),
        max(b[3] for b in members),
    )


def _all(flow: flows.Flow) -> list[int]:
    if isinstance(flow, flows.Atom):
        return [flow.step_id]
    return [step for child in flow.children for step in _all(child)]


def check_layout(flow: flows.Flow, at: dict[int, Box]) -> int:
    """Assert that every sequence's members come strictly one under the other and every
    concurrence's branches strictly side by side, left to right; returns the scopes checked."""
    if isinstance(flow, flows.Atom):
        return 0
    checked = 1
    spans = [extent(child, at) for child in flow.children]
    for before, after in itertools.pairwise(spans):
        if isinstance(flow, flows.Sequence):
            assert before[3] < after[1], f"{flow}: {before} is not above {after}"
        else:
            assert before[2] < after[0], f"{flow}: {before} is not left of {after}"
    for child in flow.children:
        checked += check_layout(child, at)
    return checked


NESTED = ["seq", ["con", "a", ["seq", "b", "c", ["con", "c1", "c2"]], "d"], "e", ["con", "f", "g"]]


# -- layout ------------------------------------------------------------------------------------


def test_sequences_go_down_and_concurrences_side_by_side_recursively(world: World) -> None:
    plan = run(world, NESTED)
    svg = draw(plan)
    at, step = boxes(svg), ids(plan)

    assert check_layout(plan.flow(), at) == 5  # every scope of NESTED was checked
    # spelled out for one path through it
    assert at[step["b"]][3] < at[step["c"]][1] < at[step["c1"]][1] < at[step["e"]][1]
    assert at[step["a"]][2] < at[step["b"]][0] and at[step["b"]][2] < at[step["d"]][0]
    assert at[step["c1"]][1] == at[step["c2"]][1]  # concurrent branches start together
    # no two boxes meet, and all lie inside the drawing
    width, height = int(svg.get("width", "")), int(svg.get("height", ""))
    placed = sorted(at.values())
    for i, first in enumerate(placed):
        assert first[0] >= 0 and first[1] >= 0 and first[2] <= width and first[3] <= height
        for second in placed[i + 1 :]:
            apart = first[2] <= second[0] or second[2] <= first[0]
            assert apart or first[3] <= second[1] or second[3] <= first[1], (first, second)


def test_frames_hold_their_members_and_order_arrows_join_a_sequence(world: World) -> None:
    plan = run(world, ["seq", "a", ["con", "b", "c"], "d"])
    svg = draw(plan)
    at, step = boxes(svg), ids(plan)
    frames = {
        rect.get("class"): rect
        for rect in svg.iter(f"{SVG}rect")
        if "flow" in rect.get("class", "")
    }
    assert set(frames) == {"flow sequence", "flow concurrence"}
    con = frames["flow concurrence"]
    x, y = int(con.get("x", "")), int(con.get("y", ""))
    right, bottom = x + int(con.get("width", "")), y + int(con.get("height", ""))
    for name in ("b", "c"):
        box = at[step[name]]
        assert x < box[0] and box[2] < right and y < box[1] and box[3] < bottom
    assert at[step["a"]][3] < y  # a comes before the concurrence, outside its frame
    assert len([line for line in svg.iter(f"{SVG}line") if line.get("class") == "order"]) == 2


class AVeryLongActionClassNameIndeed(Leaf):
    pass


class Two(Action):
    def plan(self) -> None:
        with self.sequence():
            self.plan_action(Leaf, name="short")
            self.plan_action(AVeryLongActionClassNameIndeed, name="long")


def test_box_width_follows_the_label(world: World) -> None:
    plan = world.get_plan(world.trigger(Two).wait(timeout=WAIT).id)
    svg = draw(plan)
    short, long = (boxes(svg)[s.id] for s in sorted(plan.run_steps(), key=lambda s: s.id))
    assert long[2] - long[0] > short[2] - short[0]
    label = step_groups(svg)[max(s.id for s in plan.run_steps())].find(f"{SVG}text")
    assert label is not None and label.text == "AVeryLongActionClassNameIndeed"


# -- output references ---------------------------------------------------------------------


def _path_ends(d: str) -> tuple[tuple[int, int], tuple[int, int]]:
    points = [(int(x), int(y)) for x, y in re.findall(r"(-?\d+),(-?\d+)", d)]
    return points[0], points[-1]


def _on_edge(point: tuple[int, int], box: Box) -> bool:
    x, y = point
    inside = box[0] <= x <= box[2] and box[1] <= y <= box[3]
    return inside and (x in (box[0], box[2]) or y in (box[1], box[3]))


def test_output_references_are_arrows_from_producer_to_consumer(world: World) -> None:
    plan = run(world, NESTED, refs={"e": "a", "g": "c", "c2": "b"})
    svg = draw(plan)
    at, step = boxes(svg), ids(plan)
    arrows = [p for p in svg.iter(f"{SVG}path") if p.get("class") == "ref"]

    drawn = {(int(p.get("data-from", "")), int(p.get("data-to", ""))) for p in arrows}
    expected = {(step["a"], step["e"]), (step["c"], step["g"]), (step["b"], step["c2"])}
    assert drawn == expected
    assert expected <= set(plan.run_edges)  # the stored run graph holds them too
    for arrow in arrows:
        start, end = _path_ends(arrow.get("d", ""))
        assert _on_edge(start, at[int(arrow.get("data-from", ""))])
        assert _on_edge(end, at[int(arrow.get("data-to", ""))])
        assert arrow.get("marker-end") == "url(#dynaflow-ref-arrow)"
    title = next(p for p in arrows if p.get("data-to") == str(step["e"])).find(f"{SVG}title")
    assert title is not None
    assert title.text == f"Leaf #{step['e']} input value <- output.value of Leaf #{step['a']}"
    # drawn over the boxes: after the last of them
    children = list(svg.iter())
    last_step = max(children.index(g) for g in step_groups(svg).values())
    assert children.index(arrows[0]) > last_step


def test_an_arrow_past_other_steps_goes_around_them(world: World) -> None:
    plan = run(world, ["seq", ["con", "a", "x"], "b", "c", "d"], refs={"d": "a"})
    svg = draw(plan)
    at, step = boxes(svg), ids(plan)
    arrow = next(p for p in svg.iter(f"{SVG}path") if p.get("class") == "ref")
    numbers = [int(n) for n in re.findall(r"-?\d+", arrow.get("d", ""))]
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = zip(numbers[::2], numbers[1::2], strict=True)
    for i in range(1, 100):
        t = i / 100
        u = 1 - t
        x = u**3 * x0 + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t**3 * x3
        y = u**3 * y0 + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t**3 * y3
        for name in ("b", "c", "x"):
            left, top, right, bottom = at[step[name]]
            assert not (left < x < right and top < y < bottom), f"the arrow crosses {name}"


def test_output_references_name_the_input_key_and_output_path(world: World) -> None:
    plan = run(world, ["seq", "a", "b"], refs={"b": "a"})
    step = ids(plan)
    [reference] = output_references(plan)
    assert (reference.producer, reference.consumer) == (step["a"], step["b"])
    assert (reference.key, reference.path) == ("value", ("value",))


# -- states ----------------------------------------------------------------------------------


def _state_of(group: ET.Element) -> str:
    classes = group.get("class", "").split()
    assert classes[0] == "step"
    return classes[1].removeprefix("state-")


def test_each_step_is_coloured_by_its_state_after_a_failing_run(world: World) -> None:
    plan = run(world, ["seq", ["con", "ok", "bad"], "later"], fails={"bad": "disk full"})
    assert (plan.state, plan.result) == ("paused", "error")
    svg = draw(plan)
    groups, step = step_groups(svg), ids(plan)

    assert {name: _state_of(groups[step[name]]) for name in step} == {
        "ok": "success",
        "bad": "error",
        "later": "pending",
    }
    for name, state in (("ok", "success"), ("bad", "error"), ("later", "pending")):
        rect = groups[step[name]].find(f"{SVG}rect")
        assert rect is not None
        assert (rect.get("fill"), rect.get("stroke")) == STATE_COLOURS[state]
        assert groups[step[name]].get("data-state") == state
    meta = [t.text for t in groups[step["bad"]].iter(f"{SVG}text")]
    assert meta == ["Leaf", f"#{step['bad']} · error"]
    tooltip = groups[step["bad"]].find(f"{SVG}title")
    assert tooltip is not None and tooltip.text is not None
    assert "RuntimeError: disk full" in tooltip.text
    assert tooltip.text.startswith(f"Leaf #{step['bad']}: error\n")

    legend = {
        g.get("data-state"): g.find(f"{SVG}text")
        for g in svg.iter(f"{SVG}g")
        if "legend-item" in g.get("class", "") and g.get("data-state")
    }
    assert list(legend) == [str(state) for state in StepState]
    counts = {state: text.text for state, text in legend.items() if text is not None}
    assert counts["error"] == "error 1" and counts["success"] == "success 1"
    assert counts["skipped"] == "skipped 0"


def test_skipped_and_cancelled_steps_show(world: World) -> None:
    spec = ["seq", ["con", "ok", "bad"], "uses", "after"]
    skipped = run(world, spec, refs={"uses": "bad"}, fails={"bad": "no"})
    skipped = world.skip(skipped.id, ids(skipped)["bad"], resume=True).result(timeout=WAIT)
    cancelled = run(world, spec, fails={"bad": "no"})
    cancelled = world.cancel(cancelled.id).result(timeout=WAIT)

    for plan, expected in (
        (skipped, {"ok": "success", "bad": "skipped", "uses": "skipped", "after": "success"}),
        (
            cancelled,
            {"ok": "success", "bad": "cancelled", "uses": "cancelled", "after": "cancelled"},
        ),
    ):
        groups, step = step_groups(draw(plan)), ids(plan)
        assert {name: _state_of(groups[step[name]]) for name in step} == expected
        assert {name: str(plan.step(step[name]).state) for name in step} == expected


def test_every_state_has_a_colour() -> None:
    assert set(STATE_COLOURS) == set(StepState)
    assert len(set(STATE_COLOURS.values())) == len(StepState)


# -- links -----------------------------------------------------------------------------------


def test_each_step_links_to_its_page_with_its_id_and_a_tooltip(world: World) -> None:
    plan = run(world, ["con", "a", "b"])
    svg = draw(plan)
    links = [a for a in svg.iter(f"{SVG}a")]
    assert sorted(link.get("href", "") for link in links) == sorted(
        href(s.id) for s in plan.run_steps()
    )
    for link in links:
        [group] = link.findall(f"{SVG}g")
        assert link.get("href") == href(int(group.get("data-step-id", "")))
        assert group.find(f"{SVG}title") is not None
    assert GRAPH_STEP_LIMIT == 300


# -- hostile values --------------------------------------------------------------------------

EVIL = "<script>alert(1)</script> & \"co\" 'x'"


def test_stored_markup_and_control_characters_come_out_as_text(world: World) -> None:
    plan = run(world, ["seq", "a", "b"], fails={"a": f"{EVIL}\x1b[2J\x00 \ud800"})
    [first, second] = sorted(plan.steps, key=lambda s: (s.kind != "run", s.id))[:2]
    hostile = dataclasses.replace(
        plan,
        record=dataclasses.replace(plan.record, label=EVIL, id=f'{plan.id}"><script>'),
        steps=tuple(
            dataclasses.replace(s, action_class=f"evil.{EVIL}", state="odd <state>")
            if s.id == second.id
            else s
            for s in plan.steps
        ),
    )
    text = render_run_graph(hostile, step_href=lambda i: f'/steps/{i}?a=1&b="<x>')
    svg = ET.fromstring(text)  # control characters and lone surrogates would break the XML

    assert "<script" not in text and "<x>" not in text
    assert not [e for e in svg.iter() if e.tag.removeprefix(SVG) not in _SVG_TAGS]
    groups = step_groups(svg)
    label = groups[second.id].find(f"{SVG}text")
    assert label is not None and label.text == f"{EVIL}"[:31] + "…"  # cut, but the text itself
    title = svg.find(f"{SVG}title")
    assert title is not None and title.text == f"Run graph of {EVIL}"
    assert svg.get("data-plan-id") == f'{plan.id}"><script>'
    assert groups[second.id].get("class") == "step state-odd--state-"
    assert groups[second.id].get("data-state") == "odd <state>"
    error = groups[first.id].find(f"{SVG}title")
    assert error is not None and error.text is not None
    assert f"RuntimeError: {EVIL}\\x1b[2J\\x00 \\ud800" in error.text
    hrefs = {a.get("href") for a in svg.iter(f"{SVG}a")}
    assert hrefs == {f'/steps/{first.id}?a=1&b="<x>', f'/steps/{second.id}?a=1&b="<x>'}


_SVG_TAGS = {"svg", "title", "defs", "marker", "path", "g", "rect", "text", "line", "a"}


# -- determinism and edge cases ------------------------------------------------------------


def test_the_same_plan_gives_the_same_svg(world: World) -> None:
    plan = run(world, NESTED, refs={"e": "a", "g": "c"}, fails={"d": "boom"})
    svg = render_run_graph(plan, step_href=href)
    assert render_run_graph(world.get_plan(plan.id), step_href=href) == svg
    shuffled = dataclasses.replace(
        plan, steps=tuple(reversed(plan.steps)), actions=tuple(reversed(plan.actions))
    )
    assert render_run_graph(shuffled, step_href=href) == svg


def test_a_plan_without_run_steps_says_so(world: World) -> None:
    plan = world.get_plan(world.trigger(Nothing).wait(timeout=WAIT).id)
    svg = draw(plan)
    assert [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "empty"] == [
        "(nothing to run)"
    ]
    assert step_groups(svg) == {}


def test_a_step_the_flow_names_but_the_plan_lacks_is_drawn_unlinked(world: World) -> None:
    plan = run(world, ["seq", "a", "b"])
    broken = dataclasses.replace(
        plan,
        record=dataclasses.replace(plan.record, run_flow={"sequence": [*ids(plan).values(), 999]}),
    )
    svg = draw(broken)
    assert _state_of(step_groups(svg)[999]) == "missing"
    assert len(list(svg.iter(f"{SVG}a"))) == 2


def test_an_unreadable_flow_shows_the_run_steps_side_by_side(world: World) -> None:
    plan = run(world, ["seq", "a", "b", "c"])
    for run_flow in (None, {"neither": [1]}):
        broken = dataclasses.replace(
            plan, record=dataclasses.replace(plan.record, run_flow=run_flow)
        )
        at = boxes(draw(broken))
        tops = {box[1] for box in at.values()}
        assert len(at) == 3 and len(tops) == 1


def test_step_errors_are_cut_in_tooltips(world: World) -> None:
    plan = run(world, ["seq", "a"])
    [step] = plan.run_steps()
    long = dataclasses.replace(
        plan,
        steps=tuple(
            dataclasses.replace(s, error=StepError("Boom", "x" * 5000)) if s.id == step.id else s
            for s in plan.steps
        ),
    )
    title = step_groups(draw(long))[step.id].find(f"{SVG}title")
    assert title is not None and title.text is not None
    assert "Boom: xxx" in title.text and len(title.text) < 700
