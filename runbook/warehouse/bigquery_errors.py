"""What BigQuery's errors mean to runbook: a daily quota, a throttle or a transient failure to
retry, or a permanent error; from a job's ``errorResult`` or from the client's exceptions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import requests
from google.api_core import exceptions as api_errors

from runbook.clock import utcnow
from runbook.errors import QuotaExhausted, TransientWarehouseError, WarehouseError
from runbook.warehouse import quota_reset_after
from runbook.warehouse.dialect import failure

RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "jobRateLimitExceeded"})
TRANSIENT_REASONS = frozenset({"backendError", "internalError", "badGateway", "tableUnavailable"})
_DAILY = re.compile(r"per day|daily|/day|free query bytes", re.IGNORECASE)
_TRANSIENT_ERRORS = (
    api_errors.TooManyRequests,
    api_errors.InternalServerError,
    api_errors.ServiceUnavailable,
    api_errors.BadGateway,
    api_errors.GatewayTimeout,
    requests.ConnectionError,
    requests.Timeout,
)
_MISSING_TABLE = re.compile(r"Table ([\w.:-]+) was not found")


def classify(reason: str | None, message: str, sql: str, status: str) -> WarehouseError | None:
    """The error for one of BigQuery's reason codes; None when it is not a retryable or quota one."""
    detail = f"{message} ({reason}{', ' + status if status else ''})"
    if reason == "quotaExceeded" and _DAILY.search(message):
        resets = quota_reset_after(utcnow())
        return QuotaExhausted(failure(sql, f"daily quota exhausted: {detail}"), resets_at=resets)
    if reason in RATE_LIMIT_REASONS or reason == "quotaExceeded":
        return TransientWarehouseError(failure(sql, detail), reason=reason, throttle=True)
    if reason in TRANSIENT_REASONS:
        return TransientWarehouseError(failure(sql, detail), reason=reason)
    return None


def job_error(error_result: Mapping[str, Any], sql: str) -> WarehouseError:
    """The error of a job that ran and failed (its ``status.errorResult``)."""
    reason = error_result.get("reason")
    message = " ".join(str(error_result.get("message") or reason or "job failed").split())
    classified = classify(reason, message, sql, "")
    if classified is not None:
        return classified
    return WarehouseError(failure(sql, f"{message} ({reason})" if reason else message))


def wrap_error(exc: Exception, sql: str) -> WarehouseError:
    if isinstance(exc, WarehouseError):
        return exc
    if isinstance(exc, api_errors.GoogleAPICallError):
        code = exc.code
        reasons = [error.get("reason") for error in exc.errors if isinstance(error, dict)]
        cause = (str(exc.message).strip().splitlines() or [type(exc).__name__])[0]
        missing = _MISSING_TABLE.search(cause) if isinstance(exc, api_errors.NotFound) else None
        if missing:
            cause = f"table {missing.group(1).replace(':', '.')} does not exist"
        for reason in reasons:
            classified = classify(reason, cause, sql, f"HTTP {code}")
            if classified is not None:
                return classified
        if isinstance(exc, api_errors.TooManyRequests):
            return TransientWarehouseError(
                failure(sql, f"{cause} (HTTP 429)"), reason="HTTP 429", throttle=True
            )
        if isinstance(exc, _TRANSIENT_ERRORS):
            return TransientWarehouseError(failure(sql, f"{cause} (HTTP {code})"), reason=f"HTTP {code}")
        return WarehouseError(failure(sql, cause))
    cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, _TRANSIENT_ERRORS):
        return TransientWarehouseError(failure(sql, cause))
    return WarehouseError(failure(sql, f"{type(exc).__name__}: {cause}"))
