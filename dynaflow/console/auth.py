"""Who may use the console, and proof that a form came from it.

* A signed session cookie of the console's own (``dynaflow_console``, scoped to the prefix it
  is mounted at, HttpOnly, SameSite=Strict) holds the CSRF token, the sign-in and the name
  the operator gave.
* With a token configured, every page and API call needs it: a page redirects to the sign-in
  form, which sets the cookie; the API takes ``Authorization: Bearer TOKEN`` (or the cookie).
  Without a token the console is open to whoever reaches it.
* Every POST needs the session's CSRF token (a form field, or the ``X-CSRF-Token`` header),
  except an API call authenticated by its bearer token; a POST whose ``Origin`` is another
  site is refused outright.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dynaflow.console.errors import forbidden

COOKIE = "dynaflow_console"
CSRF_HEADER = "x-csrf-token"
#: paths (under the console's root) anyone may fetch
PUBLIC = ("/signin", "/static/")


def route_path(scope: Scope) -> str:
    """The request's path inside the console (its mount prefix taken off)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


class Session(dict[str, Any]):
    modified = False

    def __setitem__(self, key: str, value: Any) -> None:
        self.modified = True
        super().__setitem__(key, value)

    def pop(self, key: str, default: Any = None) -> Any:
        if key in self:
            self.modified = True
        return super().pop(key, default)

    def clear(self) -> None:
        self.modified = True
        super().clear()


@dataclass
class Security:
    token: str | None
    secret_key: str
    max_age: int
    https_only: bool

    def __post_init__(self) -> None:
        self.serializer = URLSafeTimedSerializer(self.secret_key, salt="dynaflow-console")
        # what a signed-in session holds: proof of the token that cannot be turned back into it
        self.proof = (
            hmac.new(self.secret_key.encode(), self.token.encode(), hashlib.sha256).hexdigest()
            if self.token
            else None
        )

    def token_matches(self, given: str | None) -> bool:
        if self.token is None or not given:
            return False
        return hmac.compare_digest(given.encode(), self.token.encode())

    def bearer(self, request: HTTPConnection) -> bool:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(credentials.strip())

    def signed_in(self, request: HTTPConnection) -> bool:
        if self.token is None:
            return True
        proof = session(request).get("auth")
        return (
            isinstance(proof, str)
            and self.proof is not None
            and hmac.compare_digest(proof, self.proof)
        ) or self.bearer(request)


def session(request: HTTPConnection) -> Session:
    found = request.scope.get("dynaflow.session")
    if found is None:  # outside the console's middleware (a test calling an endpoint)
        found = request.scope["dynaflow.session"] = Session()
    return found


def csrf_token(request: HTTPConnection) -> str:
    """The session's CSRF token (made on first use)."""
    data = session(request)
    token = data.get("csrf")
    if not isinstance(token, str):
        token = data["csrf"] = secrets.token_urlsafe(24)
    return token


def check_csrf(request: HTTPConnection, given: Any) -> None:
    """:class:`Forbidden` unless ``given`` is this session's CSRF token."""
    expected = session(request).get("csrf")
    if not (
        isinstance(given, str)
        and isinstance(expected, str)
        and hmac.compare_digest(given.encode(), expected.encode())
    ):
        raise forbidden(
            "this form is not from this console session (its CSRF token is missing or stale); "
            "reload the page and try again"
        )


class SessionMiddleware:
    """Reads the signed session cookie into ``scope["dynaflow.session"]`` and writes it back
    when it changed (the application's own session, if it has one, is left alone)."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app, self.security = app, security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = HTTPConnection(scope).cookies.get(COOKIE)
        data: Any = {}
        if raw:
            try:
                data = self.security.serializer.loads(raw, max_age=self.security.max_age)
            except BadSignature:
                data = {}
        current = scope["dynaflow.session"] = Session(data if isinstance(data, dict) else {})

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and current.modified:
                headers = MutableHeaders(scope=message)
                path = scope.get("root_path") or "/"
                flags = f"Path={path}; HttpOnly; SameSite=Strict"
                if self.security.https_only:
                    flags += "; Secure"
                if current:
                    value = self.security.serializer.dumps(dict(current))
                    headers.append(
                        "set-cookie", f"{COOKIE}={value}; Max-Age={self.security.max_age}; {flags}"
                    )
                else:
                    headers.append("set-cookie", f"{COOKIE}=; Max-Age=0; {flags}")
            await send(message)

        await self.app(scope, receive, send_with_cookie)


class GuardMiddleware:
    """Refuses cross-site POSTs (by their ``Origin``) and, with a token set, everything but
    the sign-in form and static files to whoever has not shown it."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app, self.security = app, security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = route_path(scope)
        api = path == "/api" or path.startswith("/api/")
        if request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin(request):
            response: Any = JSONResponse(
                {"error": "cross-site request refused", "status": 403}, status_code=403
            )
            await response(scope, receive, send)
            return
        if any(path == p or path.startswith(p) for p in PUBLIC) or self.security.signed_in(request):
            await self.app(scope, receive, send)
            return
        if api:
            response = JSONResponse(
                {"error": "this console needs its token: send Authorization: Bearer TOKEN",
                 "status": 401},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="dynaflow console"'},
            )  # fmt: skip
        else:
            root = scope.get("root_path", "")
            target = path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(
                f"{root}/signin?next={quote_next(root + target)}", status_code=303
            )
        await response(scope, receive, send)


def same_origin(request: Request) -> bool:
    """No ``Origin`` header (not a browser's cross-site request), or one naming this host."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1].rstrip("/") == host


def quote_next(target: str) -> str:
    from urllib.parse import quote

    return quote(target, safe="")


def safe_next(target: str | None, root: str) -> str:
    """Where to go after signing in: a path of this console, never another site."""
    home = f"{root}/plans"
    if not target or not target.startswith(f"{root}/") or target.startswith("//"):
        return home
    if "\\" in target or any(ord(c) < 32 for c in target):
        return home
    return target


def operator_name(request: HTTPConnection, fallback: str) -> str:
    """Who is acting, for the plan's history: the name given at sign-in (or in the
    ``X-Dynaflow-Operator`` header of an API call), and where the request came from."""
    name = session(request).get("who") or request.headers.get("x-dynaflow-operator") or fallback
    name = "".join(c for c in str(name) if c.isprintable())[:64] or fallback
    host = request.client.host if request.client else None
    return f"{name} ({host})" if host else name
