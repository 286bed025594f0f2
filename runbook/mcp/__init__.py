"""``runbook mcp``: a Model Context Protocol server over stdio (docs/mcp.md).

It serves the read model through the application layer like every other surface: each tool
returns the document of the CLI's ``--json`` for the same question (built by
:mod:`runbook.app.documents`), with its long lists paged, and each error is the CLI's one line.
The write tools (``start_run``, ``resume_run``, ``stop_run``, ``validate``, ``add_note``,
``session_start``, ``session_end``) exist only with ``--allow-write``, and go through the same
use cases as the CLI, conditional writes included.

Built on the official ``mcp`` SDK (2.x: :class:`mcp.server.MCPServer`), an optional extra:
``pip install 'runbook[mcp]'``.
"""

from __future__ import annotations

from pathlib import Path

from runbook.errors import UsageError


def serve_stdio(config_path: Path, *, allow_write: bool = False) -> None:
    """Answer MCP requests on stdin/stdout for the workspace of ``config_path`` until stdin closes."""
    try:
        from runbook.mcp.server import build_server
    except ImportError as error:
        if error.name is None or not error.name.startswith(("mcp", "pydantic")):
            raise
        raise UsageError(
            "runbook mcp needs the MCP SDK: pip install 'runbook[mcp]' (mcp 2.x, pydantic 2.12 or newer)"
        ) from None
    build_server(config_path, allow_write=allow_write).run("stdio")
