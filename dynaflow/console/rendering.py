"""Jinja2 templates (autoescaped: everything a plan stores shows as text) and the filters
they use; :func:`render` gives each page what every page needs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from dynaflow.console.auth import csrf_token, session
from dynaflow.console.operations import TITLES

TEMPLATES = Path(__file__).parent / "templates"


def when(value: datetime | None) -> str:
    """A time as the console shows every time: UTC, to the second."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(value: float | None) -> str:
    """A duration for people: ``850 ms``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def pretty(value: Any) -> str:
    """JSON, indented, for a ``<pre>`` (escaped by the template like any text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def short(value: str | None, keep: int = 48) -> str:
    """A long class name, its module abbreviated: ``app.deploy.Deploy`` stays readable."""
    if not value:
        return "—"
    if len(value) <= keep:
        return value
    module, _, name = value.rpartition(".")
    return f"…{module[-(keep - len(name) - 2) :]}.{name}" if module else value[:keep] + "…"


environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(when=when, seconds=seconds, pretty=pretty, short=short)
environment.globals.update(titles=TITLES)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    from dynaflow.console.state import console_of, links_of

    console = console_of(request)
    page = environment.get_template(template).render(
        request=request,
        console=console,
        links=links_of(request),
        root=request.scope.get("root_path", ""),
        csrf=csrf_token(request),
        flash=session(request).pop("flash"),
        signed_in=console.security.token is not None and console.security.signed_in(request),
        **context,
    )
    return HTMLResponse(page, status_code=status)


def render_fragment(template: str, **context: Any) -> str:
    return environment.get_template(template).render(**context)


def render_error(request: Request, status: int, message: str) -> HTMLResponse:
    try:
        return render(request, "error.html", status, status_code=status, message=message)
    except Exception:  # the error page itself failed (no console state): plain text
        body = Markup("<!doctype html><title>error</title><p data-testid='error-message'>{}</p>")
        return HTMLResponse(body.format(message), status_code=status)
