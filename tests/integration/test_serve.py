"""`runbook serve` over HTTP: the API answers what the CLI's --json says, and the token rules hold.

A real server process on 127.0.0.1 and a real HTTP client (httpx).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO, WorkspaceFixture
from serve_helpers import TOKEN, Server, start_server, teardown

AUTH = {"Authorization": f"Bearer {TOKEN}"}
VOLATILE = {
    "generated_at",
    "wall_seconds",
    "eta_seconds",
    "eta_at",
    "tasks_per_hour",
    "heartbeat_at",
    "until",
}


def steady(value: Any) -> Any:
    """``value`` without the fields that change from one second to the next."""
    if isinstance(value, dict):
        return {key: steady(item) for key, item in value.items() if key not in VOLATILE}
    if isinstance(value, list):
        return [steady(item) for item in value]
    return value


def api(server: Server, path: str, **params: str) -> httpx.Response:
    return httpx.get(server.url + path, params=params, headers=AUTH, timeout=60)


def test_the_api_answers_what_the_cli_prints(served: tuple[WorkspaceFixture, Server]) -> None:
    ws, server = served
    pairs = [
        ("/api/status", {}, ["status", "--json"]),
        ("/api/runs/1", {}, ["show", "1", "--json"]),
        ("/api/runs/1", {"tasks": "1"}, ["show", "1", "--tasks", "--json"]),
        ("/api/coverage/base", {}, ["coverage", "base", "--json"]),
        ("/api/coverage/derived", {"start": "2026-01-02", "end": "2026-01-09"}, ["coverage", "derived", "--start", "2026-01-02", "--end", "2026-01-09", "--json"]),
        ("/api/history", {"limit": "10"}, ["history", "--limit", "10", "--json"]),
        ("/api/checks/history", {}, ["checks", "history", "--json"]),
    ]  # fmt: skip
    for path, params, argv in pairs:
        answer = api(server, path, **params)
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        assert steady(answer.json()) == steady(ws.cli(*argv, check=True).json()), path
    handoff = api(server, "/api/handoff").json()
    printed = ws.cli("handoff", "--format", "json", check=True).json()
    for key in ("overall", "range", "phases", "checks", "failures", "blocked", "heatmap", "next_actions"):
        assert steady(handoff[key]) == steady(printed[key]), key


def test_the_heat_map_shows_every_kind_of_cell(served: tuple[WorkspaceFixture, Server]) -> None:
    ws, server = served
    data = api(server, "/api/heatmap", start="2026-01-01", end="2026-01-20").json()
    assert (data["schema_version"], data["start"], data["end"], data["days"]) == (
        2,
        "2026-01-01",
        "2026-01-20",
        20,
    )
    assert [row["processor"] for row in data["rows"]] == ["base", "derived", "slow"]

    def state(processor: str, day: str) -> str:
        row = next(row for row in data["rows"] if row["processor"] == processor)
        return next(s["state"] for s in row["spans"] if s["start"] <= day <= s["end"])

    assert state("base", "2026-01-01") == "stale" and state("base", "2026-01-11") == "succeeded"
    assert state("base", "2026-01-06") == "failed" and state("derived", "2026-01-06") == "blocked"
    assert state("base", "2026-01-04") == "off_day" and state("derived", "2026-01-02") == "bootstrap"
    assert state("derived", "2026-01-05") == "succeeded" and state("base", "2026-01-15") == "never_built"
    assert state("slow", "2026-01-13") == "running" and state("slow", "2026-01-16") == "queued"
    coverage = ws.cli("coverage", "base", "--start", "2026-01-01", "--end", "2026-01-20", "--json").json()
    base = next(row for row in data["rows"] if row["processor"] == "base")
    assert base["counts"]["stale"] == coverage["summary"]["stale"]
    assert (
        base["built"] == coverage["summary"]["built"] and base["expected"] == coverage["summary"]["expected"]
    )
    assert {entry["state"] for entry in data["legend"]} >= {"succeeded", "stale", "failed", "blocked", "off_day", "bootstrap", "never_built", "running", "queued"}  # fmt: skip


def test_a_cell_has_its_attempts_error_and_log(served: tuple[WorkspaceFixture, Server]) -> None:
    _, server = served
    cell = api(server, "/api/heatmap/cell", processor="base", date="2026-01-06").json()
    assert (cell["state"], cell["attempts_total"], cell["attempts"][0]["run_id"]) == ("failed", 1, 1)
    assert "ValueError: boom on 2026-01-06" in cell["error_tail"]
    assert any("boom on 2026-01-06" in line for line in cell["log"]["lines"])
    assert all("2026-01-06" in line for line in cell["log"]["lines"])
    assert cell["commands"]["run"] == "runbook run base --start 2026-01-06 --end 2026-01-06"
    stale = api(server, "/api/heatmap/cell", processor="base", date="2026-01-02").json()
    assert (
        stale["state"] == "stale"
        and stale["coverage"]["code_version"] == "v1"
        and stale["code_version"] == "v2"
    )
    checked = api(server, "/api/heatmap/cell", processor="derived", date="2026-01-05").json()
    assert [(c["check"], c["passed"]) for c in checked["coverage"]["checks"]] == [("answer", True)]


def test_bad_requests_are_one_line_with_a_status(served: tuple[WorkspaceFixture, Server]) -> None:
    _, server = served
    cases = [
        ("/api/runs/999", {}, 404, "run 999 not found"),
        ("/api/heatmap", {"start": "yesterday"}, 400, "start: not a date"),
        ("/api/heatmap", {"start": "2026-01-10", "end": "2026-01-01"}, 400, "is before"),
        ("/api/coverage/nope", {}, 400, "unknown processor 'nope'"),
        ("/api/heatmap/cell", {"processor": "base"}, 400, "a cell needs"),
        ("/api/status", {"recent": "many"}, 400, "recent: not a whole number"),
    ]
    for path, params, status, message in cases:
        answer = api(server, path, **params)
        assert answer.status_code == status, (path, answer.text)
        assert message in answer.json()["error"] and "\n" not in answer.json()["error"]
    page = httpx.get(server.url + "/runs/999", headers=AUTH, timeout=60)
    assert page.status_code == 404 and "run 999 not found" in page.text
    for method in ("POST", "PUT", "DELETE"):
        assert httpx.request(method, server.url + "/api/status", headers=AUTH, timeout=60).status_code == 405


def test_every_request_needs_the_token(served: tuple[WorkspaceFixture, Server]) -> None:
    _, server = served
    refused = httpx.get(server.url + "/api/status", timeout=60)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert "RUNBOOK_SERVE_TOKEN" in refused.json()["error"]
    assert httpx.get(server.url + "/", timeout=60).status_code == 401
    assert httpx.get(server.url + "/static/app.js", timeout=60).status_code == 401
    wrong = httpx.get(server.url + "/api/status", headers={"Authorization": "Bearer nope"}, timeout=60)
    assert wrong.status_code == 401
    assert api(server, "/api/status").status_code == 200

    with httpx.Client(base_url=server.url, timeout=60) as browser:
        assert browser.get("/heatmap", params={"token": "nope"}).status_code == 401
        opened = browser.get("/heatmap", params={"token": TOKEN, "start": "2026-01-01"})
        assert opened.status_code == 303 and opened.headers["location"] == "/heatmap?start=2026-01-01"
        cookie = opened.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
        assert browser.get("/heatmap", params={"start": "2026-01-01"}).status_code == 200  # the cookie
        assert browser.get("/api/status").status_code == 200
    page = api(server, "/")
    assert (
        page.headers["x-frame-options"] == "DENY"
        and "script-src 'self'" in page.headers["content-security-policy"]
    )
    assert TOKEN not in server.output()  # neither the access log nor anything else shows it


def test_without_a_token_only_loopback_names_are_answered(make_workspace: Any) -> None:
    ws = make_workspace('name: plain\nprocessors:\n  a:\n    command: "true"\n')
    server = start_server(ws)
    try:
        assert httpx.get(server.url + "/api/status", timeout=60).json()["runs"] == []
        port = server.url.rsplit(":", 1)[1]
        local = httpx.get(server.url + "/", headers={"Host": f"localhost:{port}"}, timeout=60)
        assert local.status_code == 200 and "Nothing is running" in local.text
        rebound = httpx.get(server.url + "/api/status", headers={"Host": f"evil.example:{port}"}, timeout=60)
        assert rebound.status_code == 400
        assert httpx.get(server.url + "/heatmap", timeout=60).status_code == 400  # no range: one line
    finally:
        teardown(ws, server)


def test_other_addresses_need_a_token_and_a_busy_port_is_one_line(
    served: tuple[WorkspaceFixture, Server], make_workspace: Any
) -> None:
    ws = make_workspace('name: plain\nprocessors:\n  a:\n    command: "true"\n')
    refused = ws.runbook("serve", "--host", "0.0.0.0", "--port", "0", timeout=60)
    assert refused.code == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "RUNBOOK_SERVE_TOKEN" in refused.stderr
    weak = ws.runbook("serve", "--port", "0", env={"RUNBOOK_SERVE_TOKEN": "short"}, timeout=60)
    assert weak.code == 2 and weak.stderr.count("\n") == 1 and "at least 16 characters" in weak.stderr
    assert "short" not in weak.stderr.replace("too short", "")  # the token itself is never shown
    port = served[1].url.rsplit(":", 1)[1]
    busy = ws.runbook("serve", "--port", port, timeout=60)
    assert (
        busy.code == 2
        and busy.stderr.count("\n") == 1
        and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    )


@pytest.mark.parametrize("path", ["/", "/runs/1", "/heatmap", "/checks", "/handoff", "/heatmap.svg"])
def test_every_page_answers(served: tuple[WorkspaceFixture, Server], path: str) -> None:
    answer = api(served[1], path)
    assert answer.status_code == 200 and len(answer.content) > 500


def test_background_services_run_from_start_up_to_shutdown(make_workspace: Any) -> None:
    """The seam for work beside the dashboard (the notification watcher): started before the first
    request is answered, stopped when the server shuts down."""
    import threading

    import uvicorn
    from core_helpers import wait_for

    from runbook.serve import listen
    from runbook.serve.app import create_app
    from runbook.workspace import Workspace

    class Ticker:
        name = "ticker"

        def __init__(self) -> None:
            self.events: list[str] = []
            self.halt = threading.Event()
            self.thread = threading.Thread(target=self.halt.wait)

        def start(self) -> None:
            self.events.append("start")
            self.thread.start()

        def stop(self) -> None:
            self.halt.set()
            self.thread.join()
            self.events.append("stop")

    ws = make_workspace('name: plain\nprocessors:\n  a:\n    command: "true"\n')
    ticker = Ticker()
    app = create_app(Workspace.load(str(ws.config)), services=[ticker])
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    serving.start()
    try:
        wait_for(lambda: server.started, timeout=60, what="the server to start")
        assert ticker.events == ["start"] and ticker.thread.is_alive()
        answer = httpx.get(f"http://127.0.0.1:{sock.getsockname()[1]}/api/status", timeout=60)
        assert answer.json()["runs"] == []
    finally:
        server.should_exit = True
        serving.join(timeout=60)
        sock.close()
    assert ticker.events == ["start", "stop"] and not ticker.thread.is_alive()


def test_the_dashboard_benchmark_runs_at_a_small_scale(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "serve_scale.py"), "--runs", "8", "--tasks", "4000", "--repeat", "1",
         "--json", "--no-browser", "--keep", str(tmp_path / "bench")],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    figures = json.loads(result.stdout)
    assert figures["store"]["run"] == 8 and figures["store"]["task"] > 3000
    pages = figures["pages"]
    assert "/heatmap (10 x 731 days)" in pages and "/handoff" in pages and "/api/status" in pages
    assert all(page["http_ms"] > 0 and page["cpu_ms"] > 0 for page in pages.values())


def test_the_handoff_page_is_kept_until_the_store_changes(make_workspace: Any) -> None:
    """The rendered handoff is answered again while nothing in the store changed (the server says
    so in Server-Timing, the page says when it was generated); a note, a run or ?refresh=1 make it
    render again."""
    ws = make_workspace(
        """\
        name: kept
        calendar: {start: 2026-01-01, end: 2026-01-10}
        processors:
          a:
            version: v1
            command: [sh, -c, "echo a {{ date }}"]
        """
    )
    ws.runbook("run", "a", "--start", "2026-01-01", "--end", "2026-01-05", check=True)
    server = start_server(ws)
    try:

        def fetch(path: str = "/handoff") -> tuple[str, str]:
            answer = httpx.get(server.url + path, timeout=60)
            assert answer.status_code == 200
            return answer.headers["server-timing"], answer.text

        timing, first = fetch()
        assert timing.startswith('cache;desc="miss"') and "cpu;dur=" in timing
        assert "generated 20" in first and "Generate it again" in first
        timing, again = fetch()
        assert (
            timing.startswith('cache;desc="hit"') and "s ago: nothing in the state store has changed" in again
        )
        assert (
            again.split("</article>")[0].split('<article class="report">')[1]
            == first.split("</article>")[0].split('<article class="report">')[1]
        )
        assert fetch("/handoff?refresh=1")[0].startswith('cache;desc="miss"')

        ws.runbook("note", "--kind", "issue", "the cache must see this note", check=True)
        timing, noted = fetch()
        assert timing.startswith('cache;desc="miss"') and "the cache must see this note" in noted
        assert fetch()[0].startswith('cache;desc="hit"')

        ws.runbook("run", "a", "--start", "2026-01-06", "--end", "2026-01-10", check=True)
        timing, built = fetch()
        assert timing.startswith('cache;desc="miss"') and "10/10 dates" in built
    finally:
        teardown(ws, server)
