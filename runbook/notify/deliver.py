"""One POST of a notification to a webhook: the only place notifications touch the network."""

from __future__ import annotations

import json
from typing import Any

USER_AGENT = "runbook-notify"


class DeliveryError(Exception):
    """The webhook could not be reached or did not answer 2xx (the message may name the URL: mask it)."""


def post(url: str, body: dict[str, Any], *, timeout: float, transport: Any = None) -> int:
    """POST ``body`` as JSON to ``url``; return the status code, or raise :class:`DeliveryError`."""
    import httpx

    content = json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response = client.post(url, content=content, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= response.status_code < 300:
        answer = " ".join(response.text.split())[:200]
        raise DeliveryError(f"HTTP {response.status_code}" + (f": {answer}" if answer else ""))
    return response.status_code
