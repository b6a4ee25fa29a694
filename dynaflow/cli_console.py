"""The ``dynaflow console`` command: the web console on a client world (one that runs no
plans), served by uvicorn."""

from __future__ import annotations

import signal
from types import FrameType

import click

from dynaflow import metrics as prometheus
from dynaflow.cli_support import (
    _console,
    _fail,
    _imports,
    _require_existing_file,
    import_option,
    url_option,
)
from dynaflow.render import safe

TOKEN_ENV = "DYNAFLOW_CONSOLE_TOKEN"


@click.command()
@url_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8808, show_default=True, type=click.IntRange(0, 65535))
@import_option
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    show_envvar=True,
    help="Every page and API call needs this token (a sign-in form sets a cookie; the API "
    "takes Authorization: Bearer TOKEN). Without one the console is open to whoever reaches it.",
)
@click.option("--read-only", is_flag=True, help="Show everything, offer and accept no action.")
@click.option(
    "--secret-key",
    envvar="DYNAFLOW_CONSOLE_SECRET",
    help="Signs the session cookie (default: a random key; sessions end with the process).",
)
@click.option("--root-path", default="", help="The prefix a proxy serves the console under.")
def console(
    url: str,
    host: str,
    port: int,
    imports: tuple[str, ...],
    token: str | None,
    read_only: bool,
    secret_key: str | None,
    root_path: str,
) -> None:
    """Serve the web console: plans, steps, operator actions, worlds and queues, and a JSON
    API under /api."""
    import uvicorn

    from dynaflow.console import app
    from dynaflow.world import World

    _imports(imports)
    _require_existing_file(url)
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        _fail(
            f"--host {host} puts the console on the network without a token: pass --token "
            f"(or set {TOKEN_ENV})"
        )
    if secret_key is not None and len(secret_key) < 16:
        _fail("--secret-key must be at least 16 characters")
    with World(url, executor=None) as world:
        prometheus.install(world)  # /metrics: what this process plans, and its own figures
        application = app(world, token=token or None, read_only=read_only, secret_key=secret_key)
        mode = "read-only" if read_only else "operators may act"
        guard = "token required" if token else "open: no token"
        _console().print(
            safe(f"dynaflow console on http://{host}:{port}{root_path}/ for {world.url}"),
            safe(f"({mode}; {guard})"),
        )
        # uvicorn shuts down gracefully on SIGTERM and SIGINT, then raises the signal again:
        # let that end the command normally (closing the world), not kill the process
        previous = signal.signal(signal.SIGTERM, _stop)
        try:
            uvicorn.run(
                application,
                host=host,
                port=port,
                root_path=root_path,
                log_level="warning",
                access_log=False,
            )
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
