"""``runbook mcp``: the Model Context Protocol server over stdio (docs/mcp.md)."""

from __future__ import annotations

from pathlib import Path

import click

from runbook.cli._context import Context, pass_ctx


@click.command()
@click.option("--dir", "--workspace", "folder", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
              help="The workspace: the folder of runbook.yaml (default: --config, else found upward from here).")  # fmt: skip
@click.option("--allow-write", is_flag=True,
              help="Also serve the tools that act: start_run, resume_run, stop_run, validate, add_note, "
              "session_start, session_end.")  # fmt: skip
@pass_ctx
def mcp(obj: Context, folder: Path | None, allow_write: bool) -> None:
    """Serve the workspace to an MCP client (an agent) over stdin/stdout until stdin closes.

    Tools: status, list_runs, get_run, get_logs, coverage, plan, check_history, handoff and
    wait_for_run; with --allow-write also start_run (always detached), resume_run, stop_run,
    validate, add_note, session_start and session_end. Results are the documents of --json, long
    lists paged; errors are the CLI's one line. Needs the mcp extra: pip install 'runbook[mcp]'.

    Registered with an MCP client: {"mcpServers": {"runbook": {"command": "runbook", "args":
    ["mcp", "--dir", "/path/to/workspace"]}}}

    Example: runbook mcp --dir /path/to/workspace --allow-write
    """
    from runbook.mcp import serve_stdio

    if folder is not None:
        if not folder.is_dir():
            from runbook.errors import UsageError

            raise UsageError(f"--dir {folder}: no such folder")
        obj.config = str(folder)
    serve_stdio(obj.workspace.config_path, allow_write=allow_write)


COMMANDS = [mcp]
