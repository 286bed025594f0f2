"""``runbook serve``: a read-only web dashboard and JSON API over the state store.

The pages (live runs, one run, the processor x date heat map and its cells, checks over time, the
handoff) and the API under ``/api/`` (the documents of the CLI's ``--json``) are drawn from the
read model through the application layer, like every other surface. Nothing here writes: every
route is a ``GET``.

It listens on 127.0.0.1 unless told otherwise; any other address needs ``RUNBOOK_SERVE_TOKEN``
(:mod:`runbook.serve.security`). Background work that should run for as long as the server does
plugs in through :func:`runbook.serve.services.background_services`. docs/serve.md describes it
all.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from runbook.errors import UsageError
from runbook.serve.security import is_loopback

if TYPE_CHECKING:
    from runbook.workspace import Workspace

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MIN_TOKEN_LENGTH = 16


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: a free one), or one line saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise UsageError(f"--host {host}: cannot resolve it ({error.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.setblocking(False)
    return sock


def serve(
    workspace: Workspace,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the dashboard of ``workspace`` until SIGINT or SIGTERM.

    Refuses (exit 2) to listen on an address other than loopback without a token.
    """
    import uvicorn

    from runbook.reports import resolve_timezone
    from runbook.serve.app import create_app
    from runbook.serve.services import background_services

    token = workspace.serve_token
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise UsageError(
            f"RUNBOOK_SERVE_TOKEN is too short to guard the dashboard: use at least {MIN_TOKEN_LENGTH} "
            "characters (for example: openssl rand -hex 24)"
        )
    if not is_loopback(host) and not token:
        raise UsageError(
            f"--host {host} is reachable from other machines: set RUNBOOK_SERVE_TOKEN to a secret first "
            "(or listen on 127.0.0.1)"
        )
    tz, zone = resolve_timezone(None, dict(workspace.environ))
    application = create_app(
        workspace, token=token, services=background_services(workspace), tz=tz, zone=zone
    )
    sock = listen(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    access = logging.getLogger("runbook.serve")
    if not access.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    config = uvicorn.Config(application, log_level="warning", access_log=False, lifespan="on")
    announce(f"runbook dashboard of {workspace.config.name}: http://{shown}:{bound}/")
    if token:
        announce(f"a browser opens http://{shown}:{bound}/?token=$RUNBOOK_SERVE_TOKEN once; API clients send "
                 "Authorization: Bearer $RUNBOOK_SERVE_TOKEN")  # fmt: skip
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
