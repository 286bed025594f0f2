"""``runbook serve``: the read-only dashboard and JSON API."""

from __future__ import annotations

import click

from runbook.cli._context import Context, pass_ctx


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any but loopback needs RUNBOOK_SERVE_TOKEN.")  # fmt: skip
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")  # fmt: skip
@pass_ctx
def serve(obj: Context, host: str, port: int) -> None:
    """Serve a read-only web dashboard and JSON API over the state store until Ctrl-C.

    Pages: live runs, one run, the processor x date heat map (click a cell for its attempts, error
    and log), checks over time, the handoff. API: /api/status, /api/runs/N, /api/coverage/P,
    /api/heatmap?start=&end= and more (docs/serve.md). Environment: RUNBOOK_SERVE_TOKEN, a
    secret every request must then carry (Authorization: Bearer, or open /?token= once in a
    browser); required to listen on any address but loopback.

    Example: runbook serve --port 8000
    """
    from runbook.serve import serve as run_server

    run_server(obj.workspace, host=host, port=port, announce=click.echo)


COMMANDS = [serve]
