"""Webhook notifications against real HTTP receivers on 127.0.0.1, with real runs through the CLI.

Receivers answer 200, or 500 then 200, or always 500 (tests/webhooks.py). The URLs carry a
secret token, which must reach the receiver and nothing else: not the state DB, the run's log,
``show``, or the handoff.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from core_helpers import query, stop_leftovers, wait_for, when
from webhooks import ALWAYS_FAIL, ALWAYS_OK, FAIL_FIRST

TOKEN = "T0KEN-s3cr3t-9f8e7d6c"
DAYS = ("--start", "2024-01-01", "--end", "2024-01-03")


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    stop_leftovers(tmp_path)


def workspace(make_workspace: Any, steps: str, notify: str, **urls: str) -> Any:
    env = {name: f"{url}/hooks/{TOKEN}" for name, url in urls.items()}
    return make_workspace(f"name: notified\n{notify}\nprocessors:\n{steps}", extra_env=env)


def cli(ws: Any, *args: str) -> Any:
    """The CLI in-process, with the workspace's webhook variables set."""
    extra = {k: v for k, v in ws.env.items() if k.endswith("_HOOK")}
    return ws.cli(*args, env=extra)


OK_STEPS = """\
  a:
    command: [sh, -c, "echo built {{ date }}"]
"""
FAILING_STEPS = """\
  a:
    command: [sh, -c, "test {{ date }} != 2024-01-02 || { echo 'cannot reach the source table'; exit 3; }"]
"""


def secrets_absent(ws: Any) -> None:
    """The token is nowhere runbook writes: the state DB (every file of it), logs, handoffs."""
    for path in ws.root.rglob("*"):
        if path.is_file() and path.name != "runbook.yaml":
            assert TOKEN.encode() not in path.read_bytes(), f"the webhook token leaked into {path}"


def test_a_finished_run_is_announced_in_json_and_slack(make_workspace: Any, hooks: Any) -> None:
    plain, slack = hooks(ALWAYS_OK), hooks(ALWAYS_OK)
    notify = """\
notify:
  - url: ${PLAIN_HOOK}
  - url: ${SLACK_HOOK}
    on: [finished, failed]
    format: slack
"""
    ws = workspace(make_workspace, OK_STEPS, notify, PLAIN_HOOK=plain.url, SLACK_HOOK=slack.url)
    result = cli(ws, "run", *DAYS)
    assert result.code == 0, result.stderr

    (doc,) = wait_for(lambda: plain.bodies("finished"), what="the finished notification")
    assert plain.requests[0].path == f"/hooks/{TOKEN}"
    assert doc["schema_version"] == 2 and doc["type"] == "runbook.notification"
    assert doc["workspace"] == "notified" and doc["target"] == "notify.0"
    assert doc["run"]["id"] == 1 and doc["run"]["status"] == "succeeded"
    assert doc["run"]["progress"]["succeeded"] == 3 and doc["run"]["origin"] == "run"
    assert doc["summary"].startswith("Run 1 (a 2024-01-01..2024-01-03) succeeded")
    assert doc["next_action"]["command"] == "runbook show 1"
    status = cli(ws, "status", "--json").json()
    assert doc["run"]["per_processor"] == status["runs"][0]["per_processor"]

    (message,) = wait_for(lambda: slack.bodies(), what="the Slack message")
    assert "run 1 succeeded" in message["text"]
    kinds = [block["type"] for block in message["blocks"]]
    assert kinds[0] == "header" and "section" in kinds and kinds[-1] == "context"
    assert any("3/3 built" in f["text"] for b in message["blocks"] for f in b.get("fields", []))

    rows = query(ws.db, "SELECT event, target, status, attempts FROM notification ORDER BY id")
    assert rows == [
        {"event": "finished", "target": "notify.0", "status": "sent", "attempts": 1},
        {"event": "finished", "target": "notify.1", "status": "sent", "attempts": 1},
    ]
    cli(ws, "handoff", "--out", "handoffs/h.md")
    secrets_absent(ws)


def test_a_failed_run_names_the_failure_and_the_next_action(make_workspace: Any, hooks: Any) -> None:
    hook = hooks(ALWAYS_OK)
    notify = "notify:\n  - url: ${PLAIN_HOOK}\n    on: [failed]\n"
    ws = workspace(make_workspace, FAILING_STEPS, notify, PLAIN_HOOK=hook.url)
    assert cli(ws, "run", *DAYS).code == 1
    (doc,) = wait_for(lambda: hook.bodies("failed"), what="the failed notification")
    assert doc["run"]["status"] == "failed" and doc["run"]["progress"]["failed"] == 1
    assert "failed: 2/3 tasks built, 1 failed" in doc["summary"]
    assert doc["next_action"]["command"] == "runbook resume 1 --detach"
    assert hook.count() == 1  # a target that listens to failed only hears nothing else


def test_a_receiver_that_fails_once_gets_it_on_the_retry(make_workspace: Any, hooks: Any) -> None:
    hook = hooks(FAIL_FIRST)
    notify = "notify:\n  - url: ${PLAIN_HOOK}\n    retries: {attempts: 2, delay: 0.2s}\n"
    ws = workspace(make_workspace, OK_STEPS, notify, PLAIN_HOOK=hook.url)
    assert cli(ws, "run", *DAYS).code == 0
    wait_for(lambda: hook.bodies("finished"), what="the retried delivery")
    assert hook.statuses[:2] == [500, 200]
    row = wait_for(lambda: query(ws.db, "SELECT * FROM notification WHERE status = 'sent'"))[0]
    assert row["attempts"] == 2 and row["error"] is None
    assert not query(ws.db, "SELECT * FROM event WHERE kind = 'notify_failed'")


def test_a_receiver_that_always_fails_is_recorded_and_the_run_is_unharmed(
    make_workspace: Any, hooks: Any
) -> None:
    hook = hooks(ALWAYS_FAIL)
    notify = "notify:\n  - url: ${PLAIN_HOOK}\n    retries: {attempts: 2, delay: 0.1s}\n"
    ws = workspace(make_workspace, OK_STEPS, notify, PLAIN_HOOK=hook.url)
    assert cli(ws, "run", *DAYS).code == 0
    (event,) = wait_for(lambda: query(ws.db, "SELECT * FROM event WHERE kind = 'notify_failed'"))
    assert (
        "finished notification to notify.0" in event["message"] and "after 3 attempt(s)" in event["message"]
    )
    assert "HTTP 500" in event["message"] and TOKEN not in event["message"]
    assert hook.count() == 3
    (row,) = query(ws.db, "SELECT * FROM notification")
    assert row["status"] == "failed" and row["attempts"] == 3
    shown = cli(ws, "show", "1").stdout
    assert "notify_failed" in shown
    secrets_absent(ws)


def test_a_receiver_that_hangs_does_not_hold_the_run_and_is_left_to_the_next_watcher(
    make_workspace: Any, hooks: Any
) -> None:
    hook = hooks(lambda n: time.sleep(25) or 200)
    notify = "notify:\n  - url: ${PLAIN_HOOK}\n    timeout: 20s\n"
    ws = workspace(make_workspace, OK_STEPS, notify, PLAIN_HOOK=hook.url)
    assert cli(ws, "run", *DAYS).code == 0  # the controller waited a bounded time, then ended
    assert hook.count() == 1
    (row,) = query(ws.db, "SELECT status, attempts, lease_until FROM notification")
    assert row["status"] == "pending" and row["attempts"] == 1
    assert when(row["lease_until"]) < dt.datetime.now(dt.UTC).replace(
        tzinfo=None
    )  # released: any watcher takes it


def test_an_unset_webhook_variable_is_one_line_and_exit_2(make_workspace: Any) -> None:
    ws = make_workspace("notify:\n  - url: ${NOT_SET_HOOK}\nprocessors:\n" + OK_STEPS)
    result = ws.cli("run", *DAYS)
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        f"runbook: error: {ws.config}: notify.0.url: environment variable NOT_SET_HOOK is not set"
    ]
    assert not ws.db.exists()  # nothing recorded


SLOW_STEPS = """\
  a:
    command: [sh, -c, "sleep 60"]
"""


@contextlib.contextmanager
def watched_run(ws: Any, workers: int) -> Iterator[tuple[dict[str, Any], list[subprocess.Popen[bytes]]]]:
    """A detached run with a step running, and `runbook worker` processes of the workspace watching
    for events (they also help the run); the workers get SIGTERM at the end."""
    info = ws.runbook("run", *DAYS, "--detach", "--json", check=True).json()
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "runbook", "worker", "--threads", "1"],
            cwd=ws.root,
            env=ws.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(workers)
    ]
    try:
        wait_for(lambda: query(ws.db, "SELECT id FROM task WHERE status = 'running'"), what="a step running")
        yield info, started
    finally:
        for worker in started:
            worker.send_signal(signal.SIGTERM)
        for worker in started:
            worker.wait(timeout=120)


def test_a_killed_controller_is_announced_once_by_the_watching_workers(
    make_workspace: Any, hooks: Any
) -> None:
    hook = hooks(ALWAYS_OK)
    notify = "notify:\n  - url: ${PLAIN_HOOK}\n    on: [interrupted]\n"
    ws = workspace(make_workspace, SLOW_STEPS, notify, PLAIN_HOOK=hook.url)
    with watched_run(ws, 2) as (info, workers):
        os.kill(info["pid"], signal.SIGKILL)
        (doc,) = wait_for(lambda: hook.bodies("interrupted"), timeout=60, what="the interrupted notification")
        assert doc["run"]["status"] == "interrupted" and doc["run"]["alive"] is False
        assert doc["details"]["reason"].startswith(f"its controller (PID {info['pid']} on ")
        assert doc["next_action"]["command"] == "runbook resume 1 --detach"
        assert doc["sender"]["pid"] in {w.pid for w in workers}
        time.sleep(6)  # three more rounds of both watchers: nothing is sent again
        assert hook.count() == 1
        assert query(ws.db, "SELECT event, status FROM notification") == [
            {"event": "interrupted", "status": "sent"}
        ]


def test_a_stopped_run_is_announced_by_its_controller_and_not_again_by_a_worker(
    make_workspace: Any, hooks: Any
) -> None:
    hook = hooks(ALWAYS_OK)
    ws = workspace(make_workspace, SLOW_STEPS, "notify:\n  - url: ${PLAIN_HOOK}\n", PLAIN_HOOK=hook.url)
    with watched_run(ws, 1) as (_, workers):
        ws.cli("stop", "1", check=True)
        (doc,) = wait_for(lambda: hook.bodies("interrupted"), timeout=60, what="the interrupted notification")
        assert doc["details"]["reason"] == doc["run"]["error"] == "received SIGTERM"  # stop signals it here
        assert doc["sender"]["pid"] not in {w.pid for w in workers}  # the controller said it
        time.sleep(6)
        assert hook.count() == 1


def test_a_run_that_makes_no_progress_is_announced_as_stalled_by_its_controller(
    make_workspace: Any, hooks: Any
) -> None:
    hook = hooks(ALWAYS_OK)
    notify = "notify:\n  - url: ${PLAIN_HOOK}\n    on: [stalled]\n    stalled_after: 1s\n"
    ws = workspace(make_workspace, SLOW_STEPS, notify, PLAIN_HOOK=hook.url)
    ws.runbook("run", *DAYS, "--detach", "--workers", "1", check=True)
    (doc,) = wait_for(lambda: hook.bodies("stalled"), timeout=60, what="the stalled notification")
    assert doc["run"]["status"] == "running" and doc["details"]["idle_seconds"] >= 1
    assert doc["summary"].startswith("Run 1 (a 2024-01-01..2024-01-03) made no progress for ")
    assert doc["key"] == f"run:1:stalled:e1:{doc['details']['last_activity_at']}:notify.0"
    ws.cli("stop", "1", check=True)


def test_the_watcher_runs_as_a_background_service_of_a_long_lived_process(
    make_workspace: Any, hooks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `runbook serve` starts beside its dashboard: start returns at once, stop ends it."""
    from runbook.app.notify import notification_services
    from runbook.workspace import Workspace

    hook = hooks(ALWAYS_OK)
    ws = workspace(make_workspace, SLOW_STEPS, "notify:\n  - url: ${PLAIN_HOOK}\n", PLAIN_HOOK=hook.url)
    quiet = make_workspace("processors:\n" + OK_STEPS, name="quiet")
    assert notification_services(Workspace.load(str(quiet.config))) == []  # no notify: nothing to run
    info = ws.runbook("run", *DAYS, "--detach", "--json", check=True).json()
    wait_for(lambda: query(ws.db, "SELECT id FROM task WHERE status = 'running'"), what="a step running")
    os.kill(info["pid"], signal.SIGKILL)
    monkeypatch.setenv("PLAIN_HOOK", ws.env["PLAIN_HOOK"])
    (service,) = notification_services(Workspace.load(str(ws.config)))
    assert service.name == "notifications"
    service.start()
    try:
        (doc,) = wait_for(lambda: hook.bodies("interrupted"), timeout=60, what="the interrupted notification")
        assert doc["sender"]["pid"] == os.getpid()
    finally:
        service.stop()


def test_runbook_serve_announces_a_killed_controller(make_workspace: Any, hooks: Any) -> None:
    """The dashboard is a long-lived process too: it watches for the events no controller sends."""
    from serve_helpers import start_server, teardown

    hook = hooks(ALWAYS_OK)
    notify = "notify:\n  - url: ${PLAIN_HOOK}\n    on: [interrupted]\n"
    ws = workspace(make_workspace, SLOW_STEPS, notify, PLAIN_HOOK=hook.url)
    info = ws.runbook("run", *DAYS, "--detach", "--json", check=True).json()
    wait_for(lambda: query(ws.db, "SELECT id FROM task WHERE status = 'running'"), what="a step running")
    server = start_server(ws)
    try:
        os.kill(info["pid"], signal.SIGKILL)
        (doc,) = wait_for(lambda: hook.bodies("interrupted"), timeout=60, what="the interrupted notification")
        assert doc["sender"]["pid"] == server.process.pid
        assert doc["next_action"]["command"] == "runbook resume 1 --detach"
    finally:
        teardown(ws, server)
    secrets_absent(ws)
