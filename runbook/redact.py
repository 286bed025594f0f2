"""Keeping secrets out of the state store, logs and handoffs.

A :class:`Redactor` knows the values the config takes from the environment and also masks the
usual shapes of credentials: passwords in URLs, ``--token=...`` style arguments, bearer tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@")
_NAMED_SECRET = re.compile(
    r"(?i)(?P<head>\b[\w-]*(?:token|password|passwd|secret|api[_-]?key|apikey|credential)s?[\w-]*"
    r"(?:\"|')?\s*(?:=|:)\s*(?:\"|')?)(?P<value>[^\s\"',;&]+)"
)
# A command-line flag naming a secret, followed by its value after a space: --token abc123
_SECRET_FLAG = re.compile(
    r"(?i)(?P<head>(?:^|\s)--?[\w-]*(?:token|password|passwd|secret|api[_-]?key|apikey|credential)s?[\w-]*\s+)"
    r"(?P<value>[^\s-][^\s]*)"
)
_BEARER = re.compile(r"(?i)(?P<head>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}")


class Redactor:
    """Replaces known secret values and credential-shaped substrings with ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)
        text = _NAMED_SECRET.sub(lambda m: m.group("head") + MASK, text)
        text = _SECRET_FLAG.sub(lambda m: m.group("head") + MASK, text)
        return _BEARER.sub(lambda m: m.group("head") + MASK, text)


NO_SECRETS = Redactor()


# ISO dates and times cannot hold a credential, so only the known secret values are looked for in
# them: a report holds thousands, and the redactor's patterns are the costly part. Nor can any
# string without whitespace, ``:`` or ``=`` (names, states, versions, numbers): every pattern
# above needs one of them.
_DATE_OR_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:T[\d:.]+Z)?")
_INERT = re.compile(r"[^\s:=]*")


def redact_tree(value: Any, redact: Callable[[str], str]) -> Any:
    """``value`` with every string inside it (not the keys of mappings) passed through ``redact``."""
    secrets = getattr(redact, "secrets", None)
    if isinstance(value, str):
        if secrets is not None and (_INERT.fullmatch(value) or _DATE_OR_TIME.fullmatch(value)):
            return redact(value) if any(secret in value for secret in secrets) else value
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_tree(item, redact) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(item, redact) for item in value]
    return value
