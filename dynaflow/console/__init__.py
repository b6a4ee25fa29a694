"""The admin console: web pages where operators find plans and act on them, and the same as
a JSON API. ``dynaflow.console.app(world)`` is an ASGI application (Starlette) to serve or to
mount under a prefix of another one; ``dynaflow console`` serves it with uvicorn."""

from dynaflow.console.application import app

__all__ = ["app"]
