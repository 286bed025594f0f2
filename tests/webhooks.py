"""A real webhook receiver for the notification tests: a threaded HTTP server on 127.0.0.1.

It records every request it gets (path, headers, JSON body, answer) and answers each with the status its
``answers`` function gives for the request's number (1, 2, ...): always 200, 500 then 200, always
500. Nothing is mocked: runbook's notifier talks to it over a real socket.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    status: int | None = None  # what it was answered (None while the receiver still thinks)


@dataclass
class Hook:
    """A running receiver: ``url`` to post to, ``requests`` it received, ``statuses`` it answered."""

    server: ThreadingHTTPServer
    answers: Callable[[int], int]
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def statuses(self) -> list[int | None]:
        """What each request was answered, in the order they came."""
        with self.lock:
            return [r.status for r in self.requests]

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def bodies(self, event: str | None = None) -> list[Any]:
        """JSON bodies answered 2xx (the deliveries that counted), optionally of one event."""
        with self.lock:
            found = [r.body for r in self.requests if r.status is not None and 200 <= r.status < 300]
        return [b for b in found if event is None or _event_of(b) == event]

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


def _event_of(body: Any) -> str | None:
    if isinstance(body, dict) and "event" in body:
        return str(body["event"])
    if isinstance(body, dict) and "blocks" in body:  # a Slack message: the context line names it
        context = body["blocks"][-1]["elements"][0]["text"]
        return context.split(" · ")[1]
    return None


def start_hook(answers: Callable[[int], int]) -> Hook:
    hook: Hook

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            received = Received(self.path, dict(self.headers), body)
            with hook.lock:
                hook.requests.append(received)
                number = len(hook.requests)
            status = hook.answers(number)  # outside the lock: a receiver that hangs hangs alone
            with hook.lock:
                received.status = status
            try:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"receiver says no")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender gave up waiting

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    hook = Hook(server, answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return hook


ALWAYS_OK: Callable[[int], int] = lambda n: 200  # noqa: E731
FAIL_FIRST: Callable[[int], int] = lambda n: 500 if n == 1 else 200  # noqa: E731
ALWAYS_FAIL: Callable[[int], int] = lambda n: 500  # noqa: E731
