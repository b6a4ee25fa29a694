"""The plan list's filters and paging, read from a query string (pages, the JSON API) or a
JSON body (bulk actions), checked: a bad value is a 400 naming the parameter and the fix."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from dynaflow.console.errors import bad_request
from dynaflow.states import PlanResult, PlanState

#: the filter parameters, in the order links write them
FILTERS = ("state", "result", "action", "label", "q", "since", "until", "parent")
PER_PAGE = 50
MAX_PER_PAGE = 500
#: longer text cannot be stored in a label or a class name: the filter is refused
MAX_TEXT = 255


@dataclass(frozen=True, slots=True)
class PlanQuery:
    """Which plans a list shows: every set filter must match; newest first."""

    state: str | None = None
    result: str | None = None
    action: str | None = None
    label: str | None = None
    q: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    #: the sub-plans of this plan
    parent: str | None = None
    page: int = 1
    per_page: int = PER_PAGE

    def filters(self) -> dict[str, Any]:
        """The keyword arguments of ``World.find_plans`` / ``count_plans``."""
        return {
            "state": self.state,
            "result": self.result,
            "action": self.action,
            "label": self.label,
            "text": self.q,
            "created_after": self.since,
            "created_before": self.until,
            "parent": self.parent,
        }

    def params(self, **changes: Any) -> dict[str, str]:
        """The query parameters that give this query (with ``changes``), defaults left out."""
        query = replace(self, **changes) if changes else self
        out = {}
        for name, value in asdict(query).items():
            if value is None or (name, value) in (("page", 1), ("per_page", PER_PAGE)):
                continue
            out[name] = value.isoformat() if isinstance(value, datetime) else str(value)
        return out

    def query_string(self, **changes: Any) -> str:
        params = self.params(**changes)
        return "?" + urlencode(params) if params else ""

    def filtered(self) -> bool:
        return any(getattr(self, name) is not None for name in FILTERS)

    def as_json(self) -> dict[str, Any]:
        """The filters as JSON (what a bulk action's body and the API's answers hold)."""
        return {k: v for k, v in self.params().items() if k in FILTERS}


def parse_query(params: Mapping[str, Any], *, paging: bool = True) -> PlanQuery:
    """A :class:`PlanQuery` from query parameters or a JSON object; unknown keys are left."""

    def text(name: str) -> str | None:
        value = params.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise bad_request(f"filter {name!r} must be text, got {value!r}")
        value = value.strip()
        if len(value) > MAX_TEXT:
            raise bad_request(f"filter {name!r} is longer than {MAX_TEXT} characters")
        return value or None

    def choice(name: str, allowed: tuple[str, ...]) -> str | None:
        value = text(name)
        if value is not None and value not in allowed:
            raise bad_request(f"unknown {name} {value!r}; use one of {', '.join(allowed)}")
        return value

    def number(name: str, default: int, top: int | None = None) -> int:
        value = params.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(value) if not isinstance(value, bool) else -1
        except (TypeError, ValueError):
            number = -1
        if number < 1 or (top is not None and number > top):
            bound = f"from 1 to {top}" if top else ">= 1"
            raise bad_request(f"{name} must be a whole number {bound}, got {value!r}")
        return number

    since, until = moment(text("since"), "since"), moment(text("until"), "until")
    if since is not None and until is not None and since >= until:
        raise bad_request(
            f"since ({since:%Y-%m-%d %H:%M}) must be before until ({until:%Y-%m-%d %H:%M})"
        )
    return PlanQuery(
        state=choice("state", tuple(s.value for s in PlanState)),
        result=choice("result", tuple(r.value for r in PlanResult)),
        action=text("action"),
        label=text("label"),
        q=text("q"),
        since=since,
        until=until,
        parent=text("parent"),
        page=number("page", 1) if paging else 1,
        per_page=number("per_page", PER_PAGE, MAX_PER_PAGE) if paging else PER_PAGE,
    )


def moment(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 time (``2030-05-01T08:00``, with or without seconds and an offset); one
    without an offset is UTC, as the console shows every time."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise bad_request(
            f"{name} must be a time like 2030-05-01T08:00 (UTC) or 2030-05-01T10:00+02:00, "
            f"got {value!r}"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
