"""What a webhook receives: one JSON document per event (docs/json-notify.md), or a Slack message.

The document is built once, when the event is claimed, from the same run snapshot ``runbook
status --json`` prints, and stored with the claim, so whichever process delivers it sends the same
bytes. The Slack message is derived from it at delivery time.
"""

from __future__ import annotations

from typing import Any

from runbook.formatting import duration, number, span
from runbook.kinds import ACTIVE_RUN_STATUSES, NotifyEvent, RunStatus
from runbook.snapshots import JSON_SCHEMA_VERSION, to_data
from runbook.snapshots.model import RunSnapshot

DOCUMENT_TYPE = "runbook.notification"
EMOJI = {
    NotifyEvent.FINISHED: "✅",
    NotifyEvent.FAILED: "❌",
    NotifyEvent.BLOCKED: "⛔",
    NotifyEvent.INTERRUPTED: "⏸️",
    NotifyEvent.STALLED: "🐢",
    NotifyEvent.THROTTLED: "🚦",
}
TITLES = {
    NotifyEvent.FINISHED: "succeeded",
    NotifyEvent.FAILED: "failed",
    NotifyEvent.BLOCKED: "is blocked",
    NotifyEvent.INTERRUPTED: "was interrupted",
    NotifyEvent.STALLED: "is stalled",
    NotifyEvent.THROTTLED: "is throttled",
}


def next_action(run: RunSnapshot) -> dict[str, Any] | None:
    """What to do about this run: the handoff's first next action for it, else the command that
    continues or explains it. The one place notifications depend on ``runbook.reports.actions``."""
    from runbook.reports.actions.engine import decide
    from runbook.reports.actions.model import Facts

    running = [run] if run.status in ACTIVE_RUN_STATUSES else []
    interrupted = [run] if run.status == RunStatus.INTERRUPTED else []
    resumable = [run] if run.status in (RunStatus.FAILED, RunStatus.BLOCKED) else []
    facts = Facts(
        processors=[], running=running, interrupted=interrupted, resumable=resumable, open_dates={}, checks=[],
        failures=[], attempt_errors={}, gaps={}, stale={}, expected={}, notes={},
    )  # fmt: skip
    found = [a for a in decide(facts) if a.command and a.situation != "started"]
    if found:
        return {"kind": found[0].kind, "text": found[0].text, "command": found[0].command}
    if "resume" in run.commands:
        return {
            "kind": "resume",
            "text": f"See what went wrong in run {run.id}, fix it, then resume it (failed dates are retried)",
            "command": run.commands["resume"],
        }
    return {"kind": "show", "text": f"Look at run {run.id}", "command": run.commands["show"]}


def summary(event: str, run: RunSnapshot, details: dict[str, Any]) -> str:
    """One line that says what happened to the run and how far it got."""
    p = run.progress
    where = f"{', '.join(run.processors)} {span(run.start_date, run.end_date)}"
    built = f"{number(p.succeeded)}/{number(p.work)} tasks built"
    extra = [f"{number(getattr(p, key))} {key}" for key in ("failed", "blocked") if getattr(p, key)]
    progress = ", ".join([built, *extra])
    head = f"Run {run.id} ({where})"
    if event == NotifyEvent.FINISHED:
        took = f" in {duration(run.wall_seconds)}" if run.wall_seconds is not None else ""
        return f"{head} succeeded{took}: {progress}"
    if event == NotifyEvent.FAILED:
        return f"{head} failed: {progress}"
    if event == NotifyEvent.BLOCKED:
        failing = ", ".join(run.checks.failing) or "a blocking check"
        return f"{head} is blocked by {failing}: {progress}"
    if event == NotifyEvent.INTERRUPTED:
        reason = details.get("reason") or run.error or "its controller is gone"
        return f"{head} was interrupted ({reason}): {progress}"
    if event == NotifyEvent.STALLED:
        idle = duration(details.get("idle_seconds"))
        return f"{head} made no progress for {idle}: {progress}"
    if event == NotifyEvent.THROTTLED:
        pool = details.get("pool")
        sizes = ""
        if details.get("size") is not None and details.get("effective_size") is not None:
            sizes = f" ({details['size']} -> {details['effective_size']} slots)"
        on = f" on pool {pool}" if pool else ""
        reason = f": {details['reason']}" if details.get("reason") else ""
        return f"{head} is throttled{on}{sizes}{reason}; {progress}"
    return f"{head}: {event}: {progress}"


def document(
    event: str,
    run: RunSnapshot,
    *,
    workspace: str,
    at: str | None,
    sender: dict[str, Any],
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body for ``event`` of ``run`` (without ``key`` and ``target``, added per target)."""
    details = dict(details or {})
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "type": DOCUMENT_TYPE,
        "event": str(event),
        "at": at,
        "workspace": workspace,
        "sender": sender,
        "summary": summary(event, run, details),
        "next_action": next_action(run),
        "details": to_data(details),
        "run": to_data(run),
    }


def slack_message(doc: dict[str, Any]) -> dict[str, Any]:
    """A Slack message (``text`` and ``blocks``) saying what the JSON document says."""
    event = doc["event"]
    run = doc["run"]
    emoji = EMOJI.get(event, "ℹ️")
    title = f"{emoji} {doc['workspace']}: run {run['id']} {TITLES.get(event, event)}"
    progress = run["progress"]
    fields = [
        ("Processors", ", ".join(run["processors"])),
        ("Dates", span(run["start_date"], run["end_date"])),
        ("Progress", f"{number(progress['succeeded'])}/{number(progress['work'])} built"
         + (f" ({progress['percent']}%)" if progress["percent"] is not None else "")),
        ("Status", str(run["status"])),
    ]  # fmt: skip
    if run["owner"]["pid"]:
        fields.append(("PID", f"{run['owner']['pid']} on {run['owner']['host']}"))
    if run["eta_seconds"] is not None:
        fields.append(("ETA", duration(run["eta_seconds"])))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(doc["summary"])}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{_escape(value)}"} for name, value in fields],
        },
    ]
    action = doc.get("next_action")
    if action:
        text = f"*Next:* {_escape(action['text'])}"
        if action.get("command"):
            text += f"\n`{_escape(action['command'])}`"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    sender = doc.get("sender") or {}
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": _escape(
                        f"runbook · {event} · {doc.get('at') or ''} · from {sender.get('host') or '?'}"
                    ),
                }
            ],
        }
    )
    return {"text": f"{title}: {doc['summary']}", "blocks": blocks}


def body(fmt: str, doc: dict[str, Any]) -> dict[str, Any]:
    """What a target of format ``fmt`` (``json`` or ``slack``) is sent."""
    return slack_message(doc) if fmt == "slack" else doc


def _escape(text: Any) -> str:
    """Text safe in Slack's mrkdwn (its three control characters)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
