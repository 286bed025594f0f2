"""The HTTP executor: a step that is one HTTP call, optionally polled until the remote job ends.

URL, headers and body are Jinja templates over the step's values; ``${NAME}`` takes a value from
the environment (a token, say) at call time, and it is masked in everything runbook writes.
"""

from __future__ import annotations

import json
import time
from typing import Any

from runbook.config import HttpStep
from runbook.errors import ConfigError
from runbook.redact import Redactor
from runbook.steps import StepContext, StepResult
from runbook.steps.templating import render
from runbook.workspace import Workspace

DEFAULT_TIMEOUT_SECONDS = 60.0


def _render_body(body: Any, values: dict[str, Any]) -> Any:
    if isinstance(body, str):
        return render(body, values)
    if isinstance(body, dict):
        return {key: _render_body(value, values) for key, value in body.items()}
    if isinstance(body, list):
        return [_render_body(value, values) for value in body]
    return body


class HttpExecutor:
    """One HTTP call per step, optionally polled until the remote job says it is done or failed.

    ``transport`` is httpx's seam (``httpx.MockTransport`` or a proxy's); the default is the
    network. A status outside ``expect_status``, a ``failed`` poll answer, a transport error and a
    poll past the step's timeout all fail the step, with the URL's secrets masked.
    """

    def __init__(
        self, step: HttpStep, workspace: Workspace, redactor: Redactor, *, transport: Any = None
    ) -> None:
        self.step = step
        self.workspace = workspace
        self.redact = redactor
        self.transport = transport

    def run(self, ctx: StepContext) -> StepResult:
        import httpx

        values = ctx.values
        try:
            url = self.workspace.expand_env(render(self.step.url, values), "http.url")
            headers = {
                key: self.workspace.expand_env(render(value, values), f"http.headers.{key}")
                for key, value in self.step.headers.items()
            }
            body = _render_body(self.step.json_body, values)
        except (ValueError, ConfigError) as exc:
            return StepResult(ok=False, error=str(exc))
        timeout = ctx.timeout or DEFAULT_TIMEOUT_SECONDS
        deadline = time.monotonic() + timeout
        try:
            with httpx.Client(timeout=timeout, transport=self.transport) as client:
                response = client.request(self.step.method, url, headers=headers, json=body)
                ctx.log.write(f"{self.step.method} {self.redact(url)} -> {response.status_code}", ctx.tag)
                if response.status_code not in self.step.expect_status:
                    return StepResult(
                        ok=False,
                        exit_code=response.status_code,
                        error=f"HTTP {response.status_code} from {self.redact(url)}: {response.text[:500]}",
                    )
                rows = _rows_from(response)
                poll = self.step.poll
                while poll is not None:
                    if ctx.cancelled.is_set():
                        return StepResult(ok=False, cancelled=True, error="stopped")
                    if time.monotonic() > deadline:
                        return StepResult(
                            ok=False, timed_out=True, error=f"polling timed out after {timeout:g}s"
                        )
                    time.sleep(poll.interval)
                    poll_url = self.workspace.expand_env(render(poll.url, values), "http.poll.url")
                    state = client.get(poll_url, headers=headers)
                    payload = state.json() if state.content else {}
                    status = str(payload.get(poll.done_field, ""))
                    ctx.log.write(f"poll {self.redact(poll_url)}: {poll.done_field}={status}", ctx.tag)
                    if status == poll.done_value:
                        rows = _rows_from(state)
                        break
                    if status == poll.failed_value:
                        return StepResult(ok=False, error=f"remote job failed: {json.dumps(payload)[:500]}")
        except httpx.HTTPError as exc:
            return StepResult(ok=False, error=f"HTTP call to {self.redact(url)} failed: {exc}")
        return StepResult(ok=True, exit_code=0, rows_affected=rows)


def _rows_from(response: Any) -> int | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    value = payload.get("rows_affected") if isinstance(payload, dict) else None
    return value if isinstance(value, int) else None
