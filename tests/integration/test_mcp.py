"""`runbook mcp`: the MCP server driven over stdio by the SDK's own client (ClientSession on
stdio_client), spawning the real `runbook mcp` as a subprocess; its answers are held to the CLI's
`--json` for the same workspace, its errors to the CLI's line, its write tools to the same use
cases (and refusals) as the CLI."""

from __future__ import annotations

import json
import os
import sys
import time
import typing
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from conftest import WorkspaceFixture
from core_helpers import process_alive, query, run_row, stop_leftovers, wait_for
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult

from runbook.kinds import NoteKind, RunStatus
from runbook.mcp.server import READ_TOOLS, WRITE_TOOLS, Tools

T = TypeVar("T")
Body = Callable[[ClientSession], Awaitable[T]]

FAILING = """\
name: contract
calendar: {start: 2026-02-01, end: 2026-02-08, off_days: [2026-02-04]}
processors:
  load:
    phase: "3"
    command: "sh -c 'echo building {{ date }}; test {{ date }} != 2026-02-06 || (echo cannot parse partition {{ date }}; exit 3)'"
  publish:
    phase: "4"
    command: "true"
    needs: [load]
"""

# Each date's step prints 40 lines with multi-byte characters: a log of about 50,000 characters.
CHATTY = """\
name: chatty
calendar: {start: 2026-03-01, end: 2026-03-08}
processors:
  talk:
    command: ["PYTHON", "-c", "import sys; [print(f'{sys.argv[1]} line {n} é ü ✓ 🚀 ' + 'x' * 90) for n in range(40)]", "{{ date }}"]
"""

SLOW = """\
name: slow
calendar: {start: 2026-04-01, end: 2026-04-03}
workers: 1
processors:
  nap:
    command: "sleep 30"
  after:
    command: "true"
    needs: [nap]
"""


def serve(ws: WorkspaceFixture, body: Body[T], *extra: str) -> T:
    """Start `runbook mcp --dir WS` (from another folder), open a client session, run ``body``."""

    async def main() -> T:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "runbook", "mcp", "--dir", str(ws.root), *extra],
            env=ws.env,
            cwd=str(ws.root.parent),
        )
        with (ws.root.parent / "mcp-server.err").open("a", encoding="utf-8") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                return await body(session)

    return anyio.run(main)


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool's structured result; the test fails on a tool error."""
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, (tool, arguments, result.content)
    data = result.structured_content
    assert isinstance(data, dict)
    # The text content says the same, as JSON, for clients that read only text.
    assert json.loads(first_text(result)) == data
    return data


async def error_of(session: ClientSession, tool: str, **arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.is_error, (tool, arguments, result.structured_content)
    return first_text(result)


def first_text(result: CallToolResult) -> str:
    text = getattr(result.content[0], "text", None)
    assert isinstance(text, str)
    return text


def without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in keys}


def cli_json(ws: WorkspaceFixture, *args: str) -> Any:
    return ws.cli(*args, "--json", check=True).json()


def cli_error(ws: WorkspaceFixture, *args: str) -> str:
    result = ws.cli(*args)
    assert result.code != 0 and result.stdout == "", (args, result)
    return result.stderr.strip()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> WorkspaceFixture:
    """The demo workspace (`runbook demo`): two seasons, checks, a session and its handoff."""
    from conftest import REPO

    root = tmp_path_factory.mktemp("mcp-demo") / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    env["PYTHONPATH"] = str(REPO)
    ws = WorkspaceFixture(root, env)
    ws.root.parent.mkdir(parents=True, exist_ok=True)
    made = WorkspaceFixture(root.parent, env).runbook("demo", "--dir", str(root), timeout=280)
    assert made.code == 0, made.stderr
    return ws


@pytest.fixture
def leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    stop_leftovers(tmp_path)


def test_read_tools_answer_with_the_documents_of_the_cli_json(demo: WorkspaceFixture) -> None:
    ws = demo
    show_1 = cli_json(ws, "show", "1")
    with_tasks = cli_json(ws, "show", "1", "--tasks")
    status = cli_json(ws, "status")
    history = cli_json(ws, "history")
    plan = cli_json(ws, "plan")
    processor = status["runs"][0]["processors"][-1]
    coverage = cli_json(ws, "coverage", processor)
    checks = cli_json(ws, "checks", "history")
    brief = ws.cli("handoff", "--format", "brief", check=True).stdout
    handoff = json.loads(ws.cli("handoff", "--format", "json", check=True).stdout)

    async def body(session: ClientSession) -> dict[str, Any]:
        listed = await session.list_tools()
        got: dict[str, Any] = {"tools": {tool.name: tool for tool in listed.tools}}
        got["status"] = await call(session, "status")
        got["list_runs"] = await call(session, "list_runs", limit=50)
        got["get_run"] = await call(session, "get_run", run_id=1)
        got["events_page"] = await call(session, "get_run", run_id=1, limit=4, offset=4)
        got["tasks"] = await call(session, "get_run", run_id=1, tasks=True, limit=500)
        got["tasks_2"] = await call(session, "get_run", run_id=1, tasks=True, limit=500, offset=500)
        got["plan"] = await call(session, "plan", limit=1000)
        got["coverage"] = await call(session, "coverage", processor=processor, limit=1000)
        got["checks"] = await call(session, "check_history", per_check=20, limit=200)
        got["brief"] = await call(session, "handoff")
        pages, offset = [], 0
        while True:  # the JSON handoff is longer than one call
            part = await call(session, "handoff", format="json", offset=offset)
            pages.append(part)
            if part["eof"]:
                break
            offset = part["next_offset"]
        got["handoff"] = pages
        return got

    got = serve(ws, body)

    # Without --allow-write only the tools that read exist, each marked read-only.
    assert set(got["tools"]) == set(READ_TOOLS)
    assert all(tool.annotations.read_only_hint for tool in got["tools"].values())

    assert without(got["status"], "generated_at", "pages") == without(status, "generated_at")
    assert got["status"]["pages"]["runs"]["total"] == len(status["runs"])
    assert without(got["list_runs"], "pages") == history
    assert got["list_runs"]["pages"]["runs"] == {
        "offset": 0, "limit": 50, "returned": len(history["runs"]), "total": len(history["runs"]), "next_offset": None,
    }  # fmt: skip

    lists = ("failures", "blocked", "checks", "events")
    assert without(got["get_run"], "pages") == {**show_1, **{k: show_1[k][:100] for k in lists}}
    assert {k: got["get_run"]["pages"][k]["total"] for k in lists} == {k: len(show_1[k]) for k in lists}
    # A page further on continues where the last one ended.
    page = got["events_page"]
    assert len(show_1["events"]) > 8 and page["events"] == show_1["events"][4:8]
    assert page["pages"]["events"] == {
        "offset": 4, "limit": 4, "returned": 4, "total": len(show_1["events"]), "next_offset": 8,
    }  # fmt: skip
    assert page["run"] == show_1["run"]
    tasks = with_tasks["tasks"]
    assert len(tasks) > 500
    assert got["tasks"]["tasks"] + got["tasks_2"]["tasks"] == tasks[:1000]
    assert got["tasks"]["pages"]["tasks"] == {
        "offset": 0, "limit": 500, "returned": 500, "total": len(tasks), "next_offset": 500,
    }  # fmt: skip

    assert without(got["plan"], "pages") == {**plan, "dates": plan["dates"][:1000]}
    assert got["plan"]["pages"]["dates"]["total"] == len(plan["dates"])
    assert without(got["coverage"], "pages") == coverage
    assert without(got["checks"], "pages") == checks and checks["checks"]

    # The handoff: the brief as the CLI prints it (its first line has the minute it was written).
    assert got["brief"]["text"].splitlines()[1:] == brief.splitlines()[1:]
    assert got["brief"]["eof"] and got["brief"]["total_chars"] == len(brief)
    assert all(len(part["text"]) <= 20_000 for part in got["handoff"]) and len(got["handoff"]) > 1
    from_mcp = json.loads("".join(part["text"] for part in got["handoff"]))
    assert from_mcp["runs"] == handoff["runs"] and from_mcp["checks"] == handoff["checks"]
    assert from_mcp["next_actions"] == handoff["next_actions"]


def test_errors_are_the_cli_line_and_logs_come_in_bounded_pages(
    make_workspace: Callable[..., WorkspaceFixture],
) -> None:
    ws = make_workspace(CHATTY.replace("PYTHON", sys.executable))
    assert ws.runbook("run").code == 0
    log = (ws.root / "state" / "logs" / "run-1.log").read_bytes()
    printed = ws.cli("logs", "1", check=True).stdout
    assert printed == log.decode("utf-8")
    inside = log.index("é".encode()) + 1  # the second byte of a character

    async def body(session: ClientSession) -> dict[str, Any]:
        got: dict[str, Any] = {"errors": {}}
        for tool, args in (("get_run", {"run_id": 42}), ("get_logs", {"run_id": 42}),
                           ("wait_for_run", {"run_id": 42}), ("coverage", {"processor": "nope"}),
                           ("plan", {"processors": ["nope"]})):  # fmt: skip
            got["errors"][tool] = await error_of(session, tool, **args)
        got["too_much"] = await session.call_tool("get_logs", {"run_id": 1, "max_chars": 20_001})
        pages, offset = [], 0
        while True:
            part = await call(session, "get_logs", run_id=1, offset=offset)
            pages.append(part)
            if part["eof"]:
                break
            offset = part["next_offset"]
        got["pages"] = pages
        small, offset = [], 0
        for _ in range(5):
            part = await call(session, "get_logs", run_id=1, offset=offset, max_chars=333)
            small.append(part)
            offset = part["next_offset"]
        got["small"] = small
        got["tail"] = await call(session, "get_logs", run_id=1, offset=-1000)
        got["middle"] = await call(session, "get_logs", run_id=1, offset=inside, max_chars=50)
        return got

    got = serve(ws, body)
    assert got["errors"]["get_run"] == cli_error(ws, "show", "42")
    assert got["errors"]["get_run"] == "runbook: error: run 42 not found (see `runbook status`)"
    assert got["errors"]["get_logs"] == cli_error(ws, "logs", "42")
    assert got["errors"]["wait_for_run"] == got["errors"]["get_run"]
    assert got["errors"]["coverage"] == cli_error(ws, "coverage", "nope")
    assert got["errors"]["plan"] == cli_error(ws, "plan", "nope")
    assert got["too_much"].is_error  # never more than 20,000 characters a call

    pages = got["pages"]
    assert len(log.decode("utf-8")) > 40_000 and len(pages) >= 3
    assert all(len(part["text"]) <= 20_000 for part in pages) and len(pages[0]["text"]) == 20_000
    assert "".join(part["text"] for part in pages) == printed
    assert [part["offset"] for part in pages[1:]] == [part["next_offset"] for part in pages[:-1]]
    assert pages[-1]["next_offset"] == pages[-1]["size"] == len(log)
    assert [part["eof"] for part in pages] == [False] * (len(pages) - 1) + [True]
    small = "".join(part["text"] for part in got["small"])
    assert all(len(part["text"]) == 333 for part in got["small"]) and printed.startswith(small)
    assert got["tail"]["eof"] and log.endswith(got["tail"]["text"].encode("utf-8"))
    assert len(got["tail"]["text"].encode("utf-8")) <= 1000
    # An offset inside a character starts at the next whole one.
    middle = got["middle"]
    assert middle["text"] == log[inside + 1 :].decode("utf-8", errors="ignore")[:50]
    assert middle["next_offset"] == inside + 1 + len(middle["text"].encode("utf-8"))


def test_write_tools_exist_only_with_allow_write_and_act_as_the_cli_does(
    make_workspace: Callable[..., WorkspaceFixture], leftovers: None
) -> None:
    ws = make_workspace(SLOW)

    async def read_only(session: ClientSession) -> set[str]:
        listed = await session.list_tools()
        names = {tool.name for tool in listed.tools}
        # A write tool is not there to be called.
        result = await session.call_tool("start_run", {})
        assert result.is_error
        # Reading a workspace without a state store answers as the CLI does, and creates none.
        assert (await call(session, "status"))["runs"] == []
        assert (await call(session, "list_runs"))["pages"]["runs"]["total"] == 0
        assert (await call(session, "plan"))["counts"] == {"nap": {"planned": 3}, "after": {"planned": 3}}
        brief = (await call(session, "handoff"))["text"]
        assert brief.splitlines()[1:] == ws.cli("handoff", "--format", "brief").stdout.splitlines()[1:]
        return names

    assert serve(ws, read_only) == set(READ_TOOLS)
    assert not ws.db.exists()  # nothing read created a state store

    async def body(session: ClientSession) -> dict[str, Any]:
        got: dict[str, Any] = {}
        listed = await session.list_tools()
        got["tools"] = {tool.name: tool for tool in listed.tools}
        got["session"] = await call(session, "session_start", title="MCP session")
        got["note"] = await call(session, "add_note", text="nap takes 30 s a date", kind="decision")
        got["started"] = await call(session, "start_run", processors=["nap", "after"], workers=1)
        run_id = got["started"]["run_id"]
        # A second run over the same work is refused by the same conditional write as the CLI's.
        got["conflict"] = await error_of(session, "start_run")
        got["cli_conflict"] = cli_error(ws, "run", "--detach")
        began = time.monotonic()
        got["waited"] = await call(session, "wait_for_run", run_id=run_id, timeout_seconds=2)
        got["wait_took"] = time.monotonic() - began
        got["busy"] = await error_of(session, "resume_run", run_id=run_id)
        got["cli_busy"] = cli_error(ws, "resume", str(run_id))
        got["stopped"] = await call(session, "stop_run", run_id=run_id)
        got["after_stop"] = await call(session, "wait_for_run", run_id=run_id, timeout_seconds=45)
        got["stop_again"] = await error_of(session, "stop_run", run_id=run_id)
        got["resumed"] = await call(session, "resume_run", run_id=run_id)
        got["status"] = await call(session, "status")
        got["validated"] = await call(session, "validate")
        return got

    got = serve(ws, body, "--allow-write")
    assert set(got["tools"]) == set(READ_TOOLS) | set(WRITE_TOOLS)
    assert got["tools"]["stop_run"].annotations.destructive_hint
    assert not got["tools"]["add_note"].annotations.read_only_hint

    session = got["session"]["session"]
    assert (session["id"], session["title"], session["open"]) == (1, "MCP session", True)
    assert got["note"]["note"]["kind"] == "decision" and got["note"]["note"]["session_id"] == 1
    assert query(ws.db, "SELECT kind, text FROM note") == [
        {"kind": "decision", "text": "nap takes 30 s a date"}
    ]

    started = got["started"]
    run_id, pid = started["run_id"], started["pid"]
    assert started["log_path"] == f"state/logs/run-{run_id}.log" and started["warnings"] == []
    row = run_row(ws.db, run_id)
    assert row["session_id"] == 1 and got["waited"]["run"]["owner"]["pid"] == pid
    assert "runbook run nap after --workers 1 --detach" in row["command_line"]
    assert got["conflict"] == got["cli_conflict"]
    assert f"run {run_id} (PID {pid}" in got["conflict"]

    # wait_for_run came back within its bound with the run still running.
    assert got["wait_took"] < 10 and got["waited"]["finished"] is False
    assert got["waited"]["run"]["status"] in ("queued", "running") and got["waited"]["run"]["id"] == run_id
    assert got["busy"] == got["cli_busy"] and "not started twice" in got["busy"]

    assert got["stopped"]["message"] == (
        f"run {run_id}: stop requested (PID {pid}); resume later with: runbook resume {run_id}"
    )
    after = got["after_stop"]
    assert after["finished"] is True and after["run"]["status"] == "interrupted"
    assert after["waited_seconds"] <= 45
    assert got["stop_again"] == f"runbook: error: run {run_id} is interrupted, not running"

    (resumed,) = got["resumed"]["resumed"]
    assert resumed["run_id"] == run_id and resumed["pid"] != pid
    assert got["status"]["runs"][0]["id"] == run_id
    wait_for(lambda: run_row(ws.db, run_id)["pid"] == resumed["pid"], what="the resumed controller")
    assert process_alive(resumed["pid"])
    assert got["validated"]["passed"] is True and got["validated"]["results"] == []

    # session_end writes the handoff like `runbook session end`.
    ws.cli("stop", str(run_id), check=True)
    wait_for(lambda: not process_alive(resumed["pid"]), timeout=60, what="the stopped controller")

    async def end(session: ClientSession) -> dict[str, Any]:
        return await call(session, "session_end")

    ended = serve(ws, end, "--allow-write")
    assert ended["session"]["open"] is False and (ws.root / ended["handoff"]).is_file()
    assert query(ws.db, "SELECT ended_at IS NOT NULL AS ended FROM work_session") == [{"ended": 1}]


def test_a_finished_run_is_returned_at_once_and_the_controller_is_reaped(
    make_workspace: Callable[..., WorkspaceFixture], leftovers: None
) -> None:
    ws = make_workspace(FAILING)

    async def body(session: ClientSession) -> dict[str, Any]:
        started = await call(session, "start_run")
        done = await call(session, "wait_for_run", run_id=started["run_id"], timeout_seconds=50)
        while not done["finished"]:
            done = await call(session, "wait_for_run", run_id=started["run_id"])
        began = time.monotonic()
        again = await call(session, "wait_for_run", run_id=started["run_id"])
        took = time.monotonic() - began
        # The server collected its detached controller's exit: no zombie is left behind.
        wait_for(
            lambda: not Path(f"/proc/{started['pid']}").exists(), timeout=10, what="the reaped controller"
        )
        return {"started": started, "done": done, "again": again, "took": took,
                "show": await call(session, "get_run", run_id=started["run_id"])}  # fmt: skip

    got = serve(ws, body, "--allow-write")
    assert got["done"]["run"]["status"] == "failed" and got["took"] < 5
    assert got["again"]["finished"] and got["again"]["waited_seconds"] < 5
    show = cli_json(ws, "show", str(got["started"]["run_id"]))
    assert without(got["show"], "pages") == show
    assert got["done"]["run"] == show["run"]


def test_a_workspace_that_is_not_there_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import subprocess

    for folder, expected in (
        (tmp_path / "missing", "no such folder"),
        (tmp_path, "runbook.yaml: file not found"),
    ):
        proc = subprocess.run([sys.executable, "-m", "runbook", "mcp", "--dir", str(folder)],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)  # fmt: skip
        assert proc.returncode == 2 and proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1 and expected in proc.stderr


def test_the_tools_spell_the_statuses_and_note_kinds_of_runbook() -> None:
    hints = typing.get_type_hints(Tools.list_runs, include_extras=True)
    status = typing.get_args(typing.get_args(hints["status"])[0])[0]
    assert set(typing.get_args(status)) == {s.value for s in RunStatus}
    hints = typing.get_type_hints(Tools.add_note, include_extras=True)
    assert set(typing.get_args(typing.get_args(hints["kind"])[0])) == {k.value for k in NoteKind}


def test_without_the_sdk_it_says_which_extra_to_install(
    make_workspace: Callable[..., WorkspaceFixture], tmp_path: Path
) -> None:
    import subprocess

    ws = make_workspace(FAILING)
    hidden = tmp_path / "no-sdk" / "mcp"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'mcp\'", name="mcp")\n')
    env = {**ws.env, "PYTHONPATH": os.pathsep.join([str(hidden.parent), ws.env["PYTHONPATH"]])}
    proc = subprocess.run([sys.executable, "-m", "runbook", "mcp"], cwd=ws.root, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "runbook: error: runbook mcp needs the MCP SDK: pip install 'runbook[mcp]' (mcp 2.x, pydantic 2.12 or newer)"
    ]
