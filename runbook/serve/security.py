"""Who may read the dashboard: the token rules of ``runbook serve``, as one ASGI middleware.

- On a loopback address without ``RUNBOOK_SERVE_TOKEN``, anyone on this machine may read, but
  only under a loopback host name (``Host: 127.0.0.1:8000``, ``localhost``): a web page that
  rebinds its own domain to 127.0.0.1 gets 400.
- With a token (required on any other address), every request must carry it: API clients send
  ``Authorization: Bearer <token>``; a browser opens ``/?token=<token>`` once and is redirected to
  the same page without it, holding a session cookie (``HttpOnly``, ``SameSite=Strict``) whose
  value is derived from the token, so the token itself is neither in the cookie nor in the
  browser's history. Anything else gets 401.

The token is compared in constant time and never logged: the access log shows paths without
their query. Every response also carries headers that keep the pages out of frames and their
addresses out of ``Referer``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "runbook_session"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        b"frame-ancestors 'none'; form-action 'self'",
    ),
]
log = logging.getLogger("runbook.serve")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) only listens on this machine."""
    if host.strip("[]") in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def session_value(token: str) -> str:
    """The session cookie's value: proof of the token that does not reveal it."""
    return hmac.new(token.encode("utf-8"), b"runbook serve session", hashlib.sha256).hexdigest()


class Guard:
    """The token rules and the security headers around the dashboard's ASGI app."""

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.token = token or None
        self.session = session_value(token) if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = {"code": 0}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            # The path only: a query may hold the token.
            elapsed = (time.perf_counter() - began) * 1000
            log.info("%s %s %s %.0fms", scope.get("method"), scope.get("path"), status["code"], elapsed)

    def _refusal(self, scope: Scope) -> Callable[[Send], Awaitable[None]] | None:
        """None when the request may go on, else what to answer instead."""
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        api = scope["path"].startswith("/api/")
        if self.token is None:
            if not is_loopback(_host_name(headers.get("host", ""))):
                return _answer(400, "this dashboard answers only under a loopback host name", api)
            return None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        offered = [value for key, value in query if key == "token"]
        if offered:
            if not hmac.compare_digest(offered[-1].encode("utf-8"), self.token.encode("utf-8")):
                return _answer(401, "wrong token", api)
            rest = urlencode([(key, value) for key, value in query if key != "token"])
            return _redirect(scope["path"] + (f"?{rest}" if rest else ""), self.session or "")
        authorization = headers.get("authorization", "")
        if authorization[:7].lower() == "bearer " and hmac.compare_digest(
            authorization[7:].strip().encode("utf-8"), self.token.encode("utf-8")
        ):
            return None
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no session
            cookie = SimpleCookie()
        held = cookie.get(COOKIE)
        if held is not None and self.session and hmac.compare_digest(held.value, self.session):
            return None
        return _answer(401, "this dashboard needs its token (RUNBOOK_SERVE_TOKEN)", api)


def _host_name(host: str) -> str:
    """The name of a ``Host`` header, without its port (``[::1]:8000`` -> ``[::1]``)."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0]


def _answer(status: int, message: str, api: bool) -> Callable[[Send], Awaitable[None]]:
    if api:
        body = json.dumps({"schema_version": 2, "error": message}).encode("utf-8")
        kind = b"application/json"
    else:
        hint = (
            "<p>Open <code>/?token=&lt;token&gt;</code> once in this browser, or send "
            "<code>Authorization: Bearer &lt;token&gt;</code>.</p>"
            if status == 401
            else ""
        )
        body = f"<!doctype html><title>runbook</title><h1>{status}</h1><p>{message}</p>{hint}".encode()
        kind = b"text/html; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))

    async def respond(send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return respond


def _redirect(location: str, session: str) -> Callable[[Send], Awaitable[None]]:
    cookie = f"{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict"

    async def respond(send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", location.encode("latin-1")),
                    (b"set-cookie", cookie.encode("latin-1")),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    return respond
