"""The HTTP step against a real HTTP server on 127.0.0.1: templating, secrets, polling, failures."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runbook.config import parse_config
from runbook.redact import Redactor
from runbook.runlog import RunLog
from runbook.steps import StepContext
from runbook.steps.http import HttpExecutor
from runbook.workspace import Workspace

SECRET = "tok-3c7f9a1e2d"


class Recorder:
    """What the server saw, and what it answers: per path, a list of (status, JSON body) to pop."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: dict[str, list[tuple[int, Any]]] = {}


@pytest.fixture
def server() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            recorder.requests.append(
                {"method": self.command, "path": self.path, "headers": dict(self.headers),
                 "json": json.loads(body) if body else None}
            )  # fmt: skip
            queue = recorder.answers.get(self.path.split("?")[0]) or [(200, {"ok": True})]
            status, payload = queue.pop(0) if len(queue) > 1 else queue[0]
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", recorder
    finally:
        httpd.shutdown()
        httpd.server_close()


def executor(tmp_path: Path, http: dict[str, Any], env: dict[str, str] | None = None) -> HttpExecutor:
    config = parse_config({"processors": {"call": {"http": http, "timeout": "5s"}}}, "runbook.yaml")
    workspace = Workspace(tmp_path / "runbook.yaml", config, environ={"API_TOKEN": SECRET, **(env or {})})
    step = config.processors["call"].http
    assert step is not None
    return HttpExecutor(step, workspace, Redactor([SECRET]))


def run(tmp_path: Path, http_executor: HttpExecutor) -> tuple[Any, str]:
    log = RunLog(tmp_path / "run.log", Redactor([SECRET]))
    ctx = StepContext(processor="call", start="2024-03-01", end="2024-03-01", run_id=4, attempt=1, log=log,
                      tag="call 2024-03-01 #1", timeout=5)  # fmt: skip
    result = http_executor.run(ctx)
    log.close()
    return result, (tmp_path / "run.log").read_text()


def test_templates_and_secrets_reach_the_server_but_not_the_log(
    tmp_path: Path, server: tuple[str, Recorder]
) -> None:
    base, recorder = server
    recorder.answers["/load/2024-03-01"] = [(201, {"rows_affected": 42})]
    http = {
        "url": base + "/load/{{ date }}?key=${API_TOKEN}",
        "headers": {"Authorization": "Bearer ${API_TOKEN}", "X-Run": "{{ run_id }}"},
        "json": {"day": "{{ date }}", "attempt": "{{ attempt }}", "tags": ["{{ processor }}"]},
    }
    result, log = run(tmp_path, executor(tmp_path, http))
    assert (result.ok, result.rows_affected, result.exit_code) == (True, 42, 0)
    (seen,) = recorder.requests
    assert seen["method"] == "POST" and seen["path"] == f"/load/2024-03-01?key={SECRET}"
    assert seen["headers"]["Authorization"] == f"Bearer {SECRET}" and seen["headers"]["X-Run"] == "4"
    assert seen["json"] == {"day": "2024-03-01", "attempt": "1", "tags": ["call"]}
    assert "-> 201" in log and SECRET not in log


def test_an_unexpected_status_fails_the_step_with_the_body(
    tmp_path: Path, server: tuple[str, Recorder]
) -> None:
    base, recorder = server
    recorder.answers["/load"] = [(503, {"error": "warehouse busy"})]
    result, _ = run(tmp_path, executor(tmp_path, {"url": base + "/load?key=${API_TOKEN}"}))
    assert not result.ok and result.exit_code == 503
    assert "HTTP 503" in result.error and "warehouse busy" in result.error and SECRET not in result.error


def test_polling_until_done_takes_the_rows_of_the_last_answer(
    tmp_path: Path, server: tuple[str, Recorder]
) -> None:
    base, recorder = server
    recorder.answers["/jobs"] = [(202, {"job": "j1"})]
    recorder.answers["/jobs/j1"] = [(200, {"status": "running"}), (200, {"status": "running"}),
                                    (200, {"status": "done", "rows_affected": 7})]  # fmt: skip
    http = {"url": base + "/jobs", "poll": {"url": base + "/jobs/j1", "interval": "10ms"}}
    result, log = run(tmp_path, executor(tmp_path, http))
    assert (result.ok, result.rows_affected) == (True, 7)
    assert [r["path"] for r in recorder.requests] == ["/jobs", "/jobs/j1", "/jobs/j1", "/jobs/j1"]
    assert log.count("status=running") == 2 and "status=done" in log


def test_a_remote_job_that_fails_fails_the_step(tmp_path: Path, server: tuple[str, Recorder]) -> None:
    base, recorder = server
    recorder.answers["/jobs/j2"] = [(200, {"status": "failed", "why": "bad partition"})]
    http = {"url": base + "/jobs", "poll": {"url": base + "/jobs/j2", "interval": "10ms"}}
    result, _ = run(tmp_path, executor(tmp_path, http))
    assert not result.ok and "remote job failed" in result.error and "bad partition" in result.error


def test_a_server_that_is_not_there_is_a_failed_step_not_a_crash(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result, _ = run(tmp_path, executor(tmp_path, {"url": f"http://127.0.0.1:{port}/x?key=${{API_TOKEN}}"}))
    assert not result.ok and "HTTP call to" in result.error and SECRET not in result.error


def test_the_transport_is_a_seam(tmp_path: Path) -> None:
    import httpx

    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"rows_affected": 3})

    http_executor = executor(tmp_path, {"url": "http://example.invalid/{{ date }}"})
    http_executor.transport = httpx.MockTransport(answer)
    result, _ = run(tmp_path, http_executor)
    assert (result.ok, result.rows_affected, seen) == (True, 3, ["http://example.invalid/2024-03-01"])
