"""The console's ASGI application: :func:`app` assembles the pages, the JSON API, the static
files and the security middleware around one :class:`~dynaflow.World`."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dynaflow import metrics as prometheus
from dynaflow.console import api, pages
from dynaflow.console.auth import GuardMiddleware, Security, SessionMiddleware, route_path
from dynaflow.console.errors import status_of
from dynaflow.console.presenting import Presenter
from dynaflow.console.rendering import render_error
from dynaflow.console.state import Console
from dynaflow.exceptions import ConfigurationError, DynaflowError
from dynaflow.world import World

log = logging.getLogger("dynaflow.console")

HERE = Path(__file__).parent

#: response headers on every answer: no framing, no sniffing, scripts only from the console
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
]


def app(
    world: World,
    *,
    token: str | None = None,
    read_only: bool = False,
    secret_key: str | None = None,
    title: str = "dynaflow",
    operator: Callable[[Request], str | None] | None = None,
    session_max_age: int = 12 * 3600,
    https_only: bool = False,
    metrics: bool = True,
) -> Starlette:
    """The console for ``world``'s database, as a Starlette application to serve with any
    ASGI server or mount under a prefix of another application.

    ``token``: with one, every page and API call needs it (a sign-in form, or
    ``Authorization: Bearer``); without, the console is open to whoever can reach it.
    ``read_only``: no operator action is offered or accepted. ``secret_key`` signs the
    session cookie (a random one by default: sessions end when the process does; give the
    same key to every process behind one address). ``operator(request)`` names who acts, for
    the plan's history (default: the name given at sign-in). ``https_only`` marks the cookie
    Secure. ``metrics``: serve prometheus_client's default registry at ``/metrics`` (behind
    the token, if there is one; ``dynaflow.metrics.install`` fills it).
    """
    if not isinstance(world, World):
        raise ConfigurationError(f"console.app() needs a dynaflow.World, got {world!r}")
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise ConfigurationError("the console's token must be a non-empty string (or None)")
    if secret_key is not None and (not isinstance(secret_key, str) or len(secret_key) < 16):
        raise ConfigurationError("secret_key must be a string of at least 16 characters")
    security = Security(
        token=token,
        secret_key=secret_key or secrets.token_urlsafe(32),
        max_age=session_max_age,
        https_only=https_only,
    )
    console = Console(
        world=world,
        security=security,
        read_only=read_only,
        title=title,
        presenter=Presenter(world.middleware),
        operator=operator,
    )
    application = Starlette(
        routes=[
            *pages.routes(),
            *api.routes(),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
            *([Route("/metrics", _Asgi(prometheus.asgi_app()), name="metrics")] if metrics else []),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(SessionMiddleware, security=security),
            Middleware(GuardMiddleware, security=security),
        ],
        exception_handlers={
            DynaflowError: _library_error,
            HTTPException: _http_error,
        },
    )
    application.state.console = console
    return application


class _Asgi:
    """An ASGI application as a route's endpoint (a function would be taken for a request
    handler): prometheus_client's, at ``/metrics`` exactly."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _answer(request: Request, status: int, message: str) -> Response:
    path = route_path(request.scope)
    if path == "/api" or path.startswith("/api/"):
        from starlette.responses import JSONResponse

        return JSONResponse({"error": message, "status": status}, status_code=status)
    return render_error(request, status, message)


async def _library_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DynaflowError)
    status = status_of(exc)
    if status >= 500:
        log.error("console: %s", exc, exc_info=exc)
    return _answer(request, status, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if message == HTTPStatus(exc.status_code).phrase:  # the router's own: say more
        message = {
            404: "no such page here; the plans list is at /plans",
            405: "this address does not take that method",
        }.get(exc.status_code, message)
    return _answer(request, exc.status_code, message)
