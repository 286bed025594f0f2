"""What a webhook receives (docs/json-notify.md): the JSON document, its Slack rendering, the
summary line and the next action, from a real run snapshot."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from runbook.kinds import NotifyEvent
from runbook.notify import payload
from runbook.snapshots.model import RunSnapshot
from runbook.snapshots.runs import run_snapshot
from runbook.state.records import Run

NOW = dt.datetime(2026, 1, 7, 18, 0, tzinfo=dt.UTC)
OUTCOMES = {("pgs", "succeeded", None): 170, ("pgs", "failed", None): 2, ("pgs", "skipped", "off_day"): 8}


def snapshot(status: str, *, alive: bool | None = True, pending: int = 0, **fields: object) -> RunSnapshot:
    values: dict[str, object] = {
        "id": 7, "status": status, "processors": ["pgs"], "start_date": "2024-10-22", "end_date": "2025-04-13",
        "pid": 4242, "host": "etl-1", "controller_id": "etl-1:4242:x", "created_at": NOW - dt.timedelta(hours=3),
        "started_at": NOW - dt.timedelta(hours=2), "heartbeat_at": NOW,
        "finished_at": None if status == "running" else NOW, **fields,
    }  # fmt: skip
    outcomes = {**OUTCOMES, ("pgs", "pending", None): pending} if pending else OUTCOMES
    return run_snapshot(Run(**values), outcomes, (172, 7200.0), [], NOW, alive)  # type: ignore[arg-type]


def doc(event: str, run: RunSnapshot, **details: object) -> dict[str, object]:
    return payload.document(event, run, workspace="nba <prod>", at="2026-01-07T18:00:00Z",
                            sender={"host": "etl-1", "pid": 99}, details=details)  # fmt: skip


def test_the_json_document_carries_the_run_object_summary_and_next_action() -> None:
    found = doc(NotifyEvent.FAILED, snapshot("failed"))
    assert list(found) == [
        "schema_version", "type", "event", "at", "workspace", "sender", "summary", "next_action", "details", "run",
    ]  # fmt: skip
    assert (
        found["schema_version"] == 2
        and found["type"] == "runbook.notification"
        and found["event"] == "failed"
    )
    assert found["summary"] == "Run 7 (pgs 2024-10-22..2025-04-13) failed: 170/172 tasks built, 2 failed"
    assert found["next_action"] == {
        "kind": "resume",
        "text": "Resume run 7 (failed): it reopens 2 failed task(s) and builds what waited on them",
        "command": "runbook resume 7 --detach",
    }
    run = found["run"]
    assert isinstance(run, dict) and run["id"] == 7 and run["status"] == "failed" and run["origin"] == "run"
    json.dumps(found)  # plain JSON all the way down


@pytest.mark.parametrize(
    ("event", "status", "details", "line"),
    [
        (NotifyEvent.FINISHED, "succeeded", {}, "Run 7 (pgs 2024-10-22..2025-04-13) succeeded in 2h00m: 170/172 tasks built, 2 failed"),
        (NotifyEvent.BLOCKED, "blocked", {}, "Run 7 (pgs 2024-10-22..2025-04-13) is blocked by a blocking check: 170/172 tasks built, 2 failed"),
        (NotifyEvent.INTERRUPTED, "interrupted", {"reason": "received SIGTERM"}, "Run 7 (pgs 2024-10-22..2025-04-13) was interrupted (received SIGTERM): 170/172 tasks built, 2 failed"),
        (NotifyEvent.STALLED, "running", {"idle_seconds": 2710.0}, "Run 7 (pgs 2024-10-22..2025-04-13) made no progress for 45m10s: 170/172 tasks built, 2 failed"),
        (NotifyEvent.THROTTLED, "running", {"pool": "warehouse", "size": 4, "effective_size": 2, "reason": "rateLimitExceeded"},
         "Run 7 (pgs 2024-10-22..2025-04-13) is throttled on pool warehouse (4 -> 2 slots): rateLimitExceeded; 170/172 tasks built, 2 failed"),
    ],
)  # fmt: skip
def test_each_event_has_a_summary_line(
    event: str, status: str, details: dict[str, object], line: str
) -> None:
    assert payload.summary(event, snapshot(status), details) == line


def test_the_next_action_follows_the_run() -> None:
    # A command that returns (the receiver may be an agent): never `logs -f`.
    assert payload.next_action(snapshot("running"))["command"] == "runbook status --json"  # type: ignore[index]
    interrupted = payload.next_action(snapshot("interrupted"))
    assert (
        interrupted is not None
        and interrupted["kind"] == "resume"
        and interrupted["command"] == "runbook resume 7 --detach"
    )
    assert payload.next_action(snapshot("succeeded"))["command"] == "runbook show 7"  # type: ignore[index]


def test_the_slack_message_says_the_same_in_blocks_and_escapes_its_control_characters() -> None:
    found = doc(NotifyEvent.STALLED, snapshot("running", pending=86), idle_seconds=2710.0)
    message = payload.body("slack", found)
    assert set(message) == {"text", "blocks"}
    assert message["text"].startswith("🐢 nba <prod>: run 7 is stalled: Run 7 (pgs")
    header, summary, facts, action, context = message["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "🐢 nba <prod>: run 7 is stalled", "emoji": True},
    }
    assert summary["text"]["text"] == found["summary"]
    names = [field["text"].split("\n")[0] for field in facts["fields"]]
    assert names == ["*Processors*", "*Dates*", "*Progress*", "*Status*", "*PID*", "*ETA*"]
    texts = [f["text"] for f in facts["fields"]]
    assert "*Progress*\n170/258 built (65.8%)" in texts and "*ETA*\n1h00m" in texts  # 86 left at 86 an hour
    assert action["text"]["text"] == (
        "*Next:* Run 7 is running (pgs: 170/258 tasks; PID 4242 on etl-1, alive): let it finish and check on it "
        "(returns at once)\n`runbook status --json`"
    )
    assert context["elements"][0]["text"] == "runbook · stalled · 2026-01-07T18:00:00Z · from etl-1"
    escaped = payload.slack_message({**found, "summary": "a < b & c > d"})
    assert escaped["blocks"][1]["text"]["text"] == "a &lt; b &amp; c &gt; d"
    assert payload.body("json", found) is found
