"""The run graph of a plan drawn as SVG on the server, for the console's plan page.

The run flow is laid out as nested rows and columns: a sequence's members one under the other,
joined by order arrows; a concurrence's branches side by side in a dashed frame. Each run step
is a box sized from its label, coloured by its state (CSS classes ``step state-<state>``, with
presentation attributes as defaults that any stylesheet overrides), linked to its step page.
Output references (a step's input refers to another step's output) are arrows from producer to
consumer, drawn over the boxes. A legend names the states, with their counts.

Everything read from the plan reaches the SVG as text: control characters shown escaped (XML
cannot hold most of them), ``<``, ``>``, ``&`` and quotes as entities. The same plan always
gives the same SVG: nothing depends on the clock or on iteration order of unordered data.
"""

from __future__ import annotations

import bisect
import functools
import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from dynaflow import flows
from dynaflow.execution_plan import ExecutionPlan, StepRecord
from dynaflow.render import format_duration, printable, short_name
from dynaflow.states import StepState
from dynaflow.values import find_refs

#: above this many run steps the console shows the steps as a table first, the graph on demand
GRAPH_STEP_LIMIT = 300

#: default ``(fill, stroke)`` of a step box per state; a stylesheet overrides them with
#: ``.state-error > rect { ... }`` (legend swatches are styled by the same rule)
STATE_COLOURS: dict[str, tuple[str, str]] = {
    StepState.PENDING: ("#f1f5f9", "#94a3b8"),
    StepState.RUNNING: ("#fef3c7", "#d97706"),
    StepState.SUSPENDED: ("#e0f2fe", "#0284c7"),
    StepState.SUCCESS: ("#dcfce7", "#16a34a"),
    StepState.ERROR: ("#fee2e2", "#dc2626"),
    StepState.SKIPPED: ("#f3e8ff", "#9333ea"),
    StepState.CANCELLED: ("#e7e5e4", "#57534e"),
}
#: a state this version does not know, or a step the flow names but the plan lacks
OTHER_COLOURS = ("#ffffff", "#94a3b8")
TEXT_COLOUR = "#0f172a"
ORDER_COLOUR = "#94a3b8"
REFERENCE_COLOUR = "#2563eb"
FONT = "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"

# geometry, in px; labels are monospaced at 12 px, 7.2 px a character
FONT_SIZE = 12
STEP_HEIGHT = 40
STEP_MIN_WIDTH = 96
STEP_PADDING = 10
LABEL_CHARS = 32
PAD = 8  # inside a sequence or concurrence frame
SEQUENCE_GAP = 20  # between the members of a sequence: room for the order arrow
BRANCH_GAP = 12  # between the branches of a concurrence
MARGIN = 12
LEGEND_HEIGHT = 28
TOOLTIP_ERROR_CHARS = 500

_NOT_XML = re.compile(r"[\ud800-\udfff\ufffe\uffff]")
_NOT_CLASS = re.compile(r"[^a-z0-9_-]")


class Reference(NamedTuple):
    """The input ``key`` of run step ``consumer`` refers to ``path`` of the output of the
    action whose run step is ``producer``."""

    producer: int
    consumer: int
    key: str
    path: tuple[Any, ...]

    def describe(self) -> str:
        path = "".join(f".{key}" if isinstance(key, str) else f"[{key}]" for key in self.path)
        return f"input {self.key} <- output{path}"


def output_references(plan: ExecutionPlan) -> list[Reference]:
    """Every output reference between two run steps of ``plan``, read from the actions' stored
    input (references stay there as markers after they are resolved), in consumer order."""
    run_step_of = {step.action_id: step.id for step in plan.run_steps()}
    found = []
    for action in plan.actions:
        consumer = run_step_of.get(action.id)
        if consumer is None or not isinstance(action.input, dict):
            continue
        for key, value in action.input.items():
            if not isinstance(value, dict | list):
                continue
            for ref in find_refs(value):
                producer = run_step_of.get(ref.action_id)
                if producer is not None and producer != consumer:
                    found.append(Reference(producer, consumer, str(key), ref.path))
    # stable: the references of one input key stay in the order they appear in it
    return sorted(found, key=lambda r: (r.consumer, r.producer, r.key))


def render_run_graph(plan: ExecutionPlan, *, step_href: Callable[[int], str]) -> str:
    """The plan's run graph as an ``<svg>`` element (a string to place in a page).

    ``step_href(step_id)`` gives the link of each step's box. Steps the flow names but the plan
    does not hold are drawn unlinked, as ``missing``."""
    steps = {step.id: step for step in plan.run_steps()}
    root = _measure(flows.simplify(plan.flow()), steps)
    legend, legend_width = _legend(steps)
    top = MARGIN + LEGEND_HEIGHT
    out: list[str] = []
    if root is None:
        width, height = max(legend_width, 160) + 2 * MARGIN, top + STEP_HEIGHT + MARGIN
        out.append(
            f'<text class="empty" x="{MARGIN}" y="{top + 24}" fill="{TEXT_COLOUR}">'
            "(nothing to run)</text>"
        )
    else:
        _place(root, MARGIN, top)
        width = max(root.w, legend_width) + 2 * MARGIN
        height = top + root.h + MARGIN
        boxes: dict[int, _Node] = {}
        _draw(root, out, boxes, step_href)
        reach = _draw_references(output_references(plan), boxes, root, out)
        width = max(width, reach + MARGIN)
    title = _escape(f"Run graph of {plan.label or short_name(plan.root_action_class or '?')}")
    return "".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" class="run-graph" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" font-family="{FONT}" '
            f'font-size="{FONT_SIZE}" data-plan-id="{_escape(plan.id)}" data-steps="{len(steps)}">',
            f"<title>{title}</title>",
            _DEFS,
            legend,
            *out,
            "</svg>",
        ]
    )


# -- layout ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Node:
    """A box of the layout: a step (``step_id`` set) or a sequence/concurrence frame."""

    kind: str  # "step", "sequence" or "concurrence"
    w: int
    h: int
    step_id: int = 0
    step: StepRecord | None = None
    label: str = ""
    meta: str = ""
    children: list[_Node] = field(default_factory=list)
    x: int = 0
    y: int = 0


def _measure(flow: flows.Flow, steps: dict[int, StepRecord]) -> _Node | None:
    """The layout tree of ``flow`` with every box's size (``None`` for an empty flow)."""
    if isinstance(flow, flows.Atom):
        step = steps.get(flow.step_id)
        if step is None:
            label, meta = f"step {flow.step_id}", "missing"
        else:
            label, meta = _label(step.action_class), f"#{step.id} · {step.state}"
        chars = max(len(label), len(meta))
        width = max(STEP_MIN_WIDTH, chars * 36 // 5 + 2 * STEP_PADDING)
        return _Node("step", width, STEP_HEIGHT, flow.step_id, step, label, meta)
    children = [node for node in (_measure(child, steps) for child in flow.children) if node]
    if not children:
        return None
    if isinstance(flow, flows.Sequence):
        width = max(child.w for child in children)
        height = sum(child.h for child in children) + SEQUENCE_GAP * (len(children) - 1)
        return _Node("sequence", width + 2 * PAD, height + 2 * PAD, children=children)
    width = sum(child.w for child in children) + BRANCH_GAP * (len(children) - 1)
    height = max(child.h for child in children)
    return _Node("concurrence", width + 2 * PAD, height + 2 * PAD, children=children)


def _place(node: _Node, x: int, y: int) -> None:
    """Give ``node`` and everything inside it their positions, ``node`` at ``(x, y)``:
    sequence members centred one under the other, concurrence branches side by side, top
    aligned (they start together)."""
    node.x, node.y = x, y
    if node.kind == "sequence":
        at = y + PAD
        for child in node.children:
            _place(child, x + (node.w - child.w) // 2, at)
            at += child.h + SEQUENCE_GAP
    elif node.kind == "concurrence":
        at = x + PAD
        for child in node.children:
            _place(child, at, y + PAD)
            at += child.w + BRANCH_GAP


# -- drawing ---------------------------------------------------------------------------------

_DEFS = (
    "<defs>"
    '<marker id="dynaflow-order-arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="6" '
    f'markerHeight="6" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="{ORDER_COLOUR}"/></marker>'
    '<marker id="dynaflow-ref-arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
    f'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="{REFERENCE_COLOUR}"/>'
    "</marker></defs>"
)


def _escape(value: str, multiline: bool = False) -> str:
    """Stored text as SVG character data or attribute value: control characters, lone
    surrogates and non-characters shown escaped (XML cannot hold them), markup as entities."""
    shown = _NOT_XML.sub(
        lambda m: f"\\u{ord(m.group()):04x}", printable(value, multiline=multiline)
    )
    return html.escape(shown, quote=True)


#: :func:`_escape` for the values that repeat over a plan's steps (class names, states)
_text = functools.lru_cache(maxsize=4096)(_escape)


@functools.lru_cache(maxsize=4096)
def _label(action_class: str) -> str:
    """A step's label: the short class name, cut to :data:`LABEL_CHARS`."""
    label = short_name(action_class)
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


@functools.lru_cache(maxsize=256)
def state_class(state: str) -> str:
    """``state-<state>``, reduced to characters safe in a class attribute."""
    return "state-" + _NOT_CLASS.sub("-", str(state).lower())


def _draw(
    node: _Node, out: list[str], boxes: dict[int, _Node], step_href: Callable[[int], str]
) -> None:
    if node.kind == "step":
        boxes[node.step_id] = node
        out.append(_step(node, step_href))
        return
    if node.kind == "sequence":
        frame = f'fill="none" stroke="{ORDER_COLOUR}" stroke-opacity="0.5"'
    else:
        frame = f'fill="#f8fafc" fill-opacity="0.6" stroke="{ORDER_COLOUR}" stroke-dasharray="4 3"'
    out.append(
        f'<rect class="flow {node.kind}" x="{node.x}" y="{node.y}" width="{node.w}" '
        f'height="{node.h}" rx="6" {frame}/>'
    )
    for child in node.children:
        _draw(child, out, boxes, step_href)
    if node.kind == "sequence":
        centre = node.x + node.w // 2
        for before, after in zip(node.children, node.children[1:], strict=False):
            out.append(
                f'<line class="order" x1="{centre}" y1="{before.y + before.h}" x2="{centre}" '
                f'y2="{after.y - 1}" stroke="{ORDER_COLOUR}" '
                'marker-end="url(#dynaflow-order-arrow)"/>'
            )


def _step(node: _Node, step_href: Callable[[int], str]) -> str:
    step = node.step
    state = str(step.state) if step is not None else "missing"
    fill, stroke = STATE_COLOURS.get(state, OTHER_COLOURS)
    centre = node.x + node.w // 2
    meta = f"#{node.step_id} · {_text(state)}" if step is not None else "missing"
    box = (
        f'<g class="step {state_class(state)}" data-step-id="{node.step_id}" '
        f'data-state="{_text(state)}"><title>{_tooltip(node)}</title>'
        f'<rect x="{node.x}" y="{node.y}" width="{node.w}" height="{node.h}" rx="4" '
        f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
        f'<text x="{centre}" y="{node.y + 16}" text-anchor="middle" font-weight="bold" '
        f'fill="{TEXT_COLOUR}">{_text(node.label)}</text>'
        f'<text class="step-meta" x="{centre}" y="{node.y + 31}" text-anchor="middle" '
        f'font-size="11" fill="{TEXT_COLOUR}" fill-opacity="0.75">{meta}</text></g>'
    )
    if step is None:
        return box
    return f'<a class="step-link" href="{_escape(step_href(step.id))}">{box}</a>'


def _tooltip(node: _Node) -> str:
    """The step's box tooltip: name, id and state; its class; queue; duration; error."""
    step = node.step
    if step is None:
        return f"step {node.step_id} is missing from the plan"
    state = _text(str(step.state))
    lines = [f"{_text(_label(step.action_class))} #{step.id}: {state}", _text(step.action_class)]
    if step.queue != "default":
        lines.append(f"queue {_text(step.queue)}")
    duration = step.duration
    if duration is None and step.started_at is not None and step.ended_at is not None:
        duration = (step.ended_at - step.started_at).total_seconds()
    if duration is not None:
        lines.append(f"took {format_duration(duration)}")
    if step.error is not None:
        error = str(step.error)
        if len(error) > TOOLTIP_ERROR_CHARS:
            error = error[: TOOLTIP_ERROR_CHARS - 1] + "…"
        lines.append(_escape(error, multiline=True))
    return "\n".join(lines)


def _draw_references(
    references: list[Reference], boxes: dict[int, _Node], root: _Node, out: list[str]
) -> int:
    """One arrow per producer/consumer pair (its tooltip lists every reference it stands for),
    over the boxes. Returns how far right the arrows reach."""
    pairs: dict[tuple[int, int], list[Reference]] = {}
    for reference in references:
        if reference.producer in boxes and reference.consumer in boxes:
            pairs.setdefault((reference.producer, reference.consumer), []).append(reference)
    if not pairs:
        return 0
    router = _Router(boxes, root)
    out.append('<g class="references">')
    for (producer, consumer), refs in sorted(pairs.items()):
        source, target = boxes[producer], boxes[consumer]
        title = "\n".join(
            _escape(f"{_name(target)} {ref.describe()} of {_name(source)}") for ref in refs
        )
        out.append(
            f'<path class="ref" data-from="{producer}" data-to="{consumer}" '
            f'd="{router.route(source, target)}" fill="none" stroke="{REFERENCE_COLOUR}" '
            f'stroke-width="1.5" marker-end="url(#dynaflow-ref-arrow)"><title>{title}</title>'
            "</path>"
        )
    out.append("</g>")
    return router.reach


def _name(node: _Node) -> str:
    return f"{node.label} #{node.step_id}"


class _Router:
    """Curves between step boxes: straight down from bottom to top when no other step box is
    in the way, else an arc around the nearer outer side of the graph."""

    #: boxes looked at per arrow before its way counts as blocked (keeps 2,000 steps fast)
    LOOK = 64

    def __init__(self, boxes: dict[int, _Node], root: _Node) -> None:
        self.boxes = sorted(boxes.values(), key=lambda node: (node.y, node.x))
        self.tops = [node.y for node in self.boxes]
        self.left, self.right = root.x, root.x + root.w
        self.reach = 0

    def route(self, a: _Node, b: _Node) -> str:
        a_mid, b_mid = a.y + a.h // 2, b.y + b.h // 2
        if b.y >= a.y + a.h:  # below
            sx, sy, ex, ey = a.x + a.w // 2, a.y + a.h, b.x + b.w // 2, b.y
            if self._clear(min(sx, ex) - 4, max(sx, ex) + 4, sy, ey, a, b):
                bend = max((ey - sy) // 2, 10)
                return f"M{sx},{sy} C{sx},{sy + bend} {ex},{ey - bend} {ex},{ey}"
        elif b.x >= a.x + a.w or b.x + b.w <= a.x:  # beside
            sx, ex = (a.x + a.w, b.x) if b.x >= a.x + a.w else (a.x, b.x + b.w)
            bend = (ex - sx) // 2
            return f"M{sx},{a_mid} C{sx + bend},{a_mid} {ex - bend},{b_mid} {ex},{b_mid}"
        # boxes in the way (or above, in an overlapping column): around the nearer side
        out = 24 + min(abs(b_mid - a_mid) // 10, 60)
        left = min(a.x, b.x)
        right = max(a.x + a.w, b.x + b.w)
        if left - self.left <= self.right - right:
            side = max(left - out, 0)
            return f"M{a.x},{a_mid} C{side},{a_mid} {side},{b_mid} {b.x},{b_mid}"
        side = right + out
        self.reach = max(self.reach, side)
        a_right, b_right = a.x + a.w, b.x + b.w
        return f"M{a_right},{a_mid} C{side},{a_mid} {side},{b_mid} {b_right},{b_mid}"

    def _clear(self, x0: int, x1: int, y0: int, y1: int, a: _Node, b: _Node) -> bool:
        """No step box but ``a`` and ``b`` meets the rectangle ``x0..x1`` by ``y0..y1``."""
        first = bisect.bisect_right(self.tops, y0 - STEP_HEIGHT)
        last = bisect.bisect_left(self.tops, y1)
        if last - first > self.LOOK:
            return False
        for node in self.boxes[first:last]:
            if node is a or node is b:
                continue
            if node.x < x1 and node.x + node.w > x0 and node.y < y1 and node.y + node.h > y0:
                return False
        return True


def _legend(steps: dict[int, StepRecord]) -> tuple[str, int]:
    """A row naming each state with its count, and the two kinds of arrow; and its width."""
    counts: dict[str, int] = {}
    for step in steps.values():
        counts[str(step.state)] = counts.get(str(step.state), 0) + 1
    known = [str(state) for state in StepState]
    items = [(state, STATE_COLOURS[state]) for state in known]
    items += [(state, OTHER_COLOURS) for state in sorted(counts) if state not in known]
    parts = ['<g class="legend">']
    x, y = MARGIN, MARGIN
    for state, (fill, stroke) in items:
        label = f"{state} {counts.get(state, 0)}"
        parts.append(
            f'<g class="legend-item {state_class(state)}" data-state="{_text(state)}">'
            f'<rect x="{x}" y="{y}" width="14" height="14" rx="3" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.5"/><text x="{x + 19}" y="{y + 11}" '
            f'fill="{TEXT_COLOUR}">{_text(label)}</text></g>'
        )
        x += 19 + len(label) * 36 // 5 + 14
    for kind, colour, text in (
        ("order", ORDER_COLOUR, "runs after"),
        ("ref", REFERENCE_COLOUR, "output reference"),
    ):
        parts.append(
            f'<g class="legend-item legend-{kind}"><line x1="{x}" y1="{y + 7}" x2="{x + 22}" '
            f'y2="{y + 7}" stroke="{colour}" stroke-width="1.5" '
            f'marker-end="url(#dynaflow-{kind}-arrow)"/><text x="{x + 28}" y="{y + 11}" '
            f'fill="{TEXT_COLOUR}">{text}</text></g>'
        )
        x += 28 + len(text) * 36 // 5 + 14
    parts.append("</g>")
    return "".join(parts), x - MARGIN
