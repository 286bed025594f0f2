"""The one error tree of runbook.

Every error a user can cause or meet carries the process exit code the CLI returns for it and a
message that names the fix. Only ``runbook.cli`` turns these into output and exit codes.

    RunbookError                     base; exit code 1
    ├── UsageError                   bad command-line usage; exit 2
    ├── ConfigError                  runbook.yaml is wrong (file, key path, value); exit 2
    ├── StateError                   the state store is missing, behind, or inconsistent; exit 2
    │   ├── RunConflict              another active run covers the same processors and dates; exit 2
    │   ├── RunBusy                  the run is owned by a live controller (or was just taken); exit 5
    │   └── StoreUnavailable         the state store stopped accepting writes during a run; exit 6
    ├── WarehouseError               a warehouse query failed (names the query and the cause); exit 1
    │   ├── TransientWarehouseError  rate limit, 5xx: retried with backoff until a deadline
    │   └── QuotaExhausted           a daily quota is used up: the run is interrupted until it resets
    ├── QuotaWait                resume before a daily quota resets; exit 4
    └── StepError                    a step could not be started or was misconfigured; exit 1

How a run ended is not an error: the CLI maps its outcome (succeeded, failed, blocked,
interrupted) to the exit codes 0, 1, 3 and 4.
"""

from __future__ import annotations

import datetime as dt

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BLOCKED = 3
EXIT_INTERRUPTED = 4
EXIT_BUSY = 5
EXIT_STORE = 6


class RunbookError(Exception):
    """Base of every error runbook raises on purpose."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(RunbookError):
    exit_code = EXIT_USAGE


class ConfigError(RunbookError):
    """runbook.yaml (or a value derived from it) is invalid.

    The message always has the form ``FILE: KEY.PATH: problem`` so one line says where to look.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, file: str | None = None, path: str | None = None) -> None:
        where = ": ".join(part for part in (file, path) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.path = path


class StateError(RunbookError):
    exit_code = EXIT_USAGE
    transient = False  # a dropped connection: the same write may succeed once it is back


class RunConflict(StateError):
    pass


class RunBusy(StateError):
    """The run has a live owner: it is not started twice (``runbook resume N --join`` helps it)."""

    exit_code = EXIT_BUSY


class StoreUnavailable(StateError):
    """A controller or worker could no longer write to the state store and stopped; the run shows
    as interrupted and ``runbook resume`` continues it once the store is back."""

    exit_code = EXIT_STORE


class WarehouseError(RunbookError):
    exit_code = EXIT_FAILED


class TransientWarehouseError(WarehouseError):
    """Worth trying again: a rate limit (``throttle``: the warehouse asks for less concurrency) or
    a transient server error. ``reason`` is the warehouse's reason code (``rateLimitExceeded``)."""

    def __init__(self, message: str, *, reason: str | None = None, throttle: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.throttle = throttle


class QuotaExhausted(WarehouseError):
    """A daily quota of the warehouse is used up: nothing runs again before ``resets_at``."""

    def __init__(self, message: str, *, resets_at: dt.datetime) -> None:
        super().__init__(message)
        self.resets_at = resets_at


class QuotaWait(RunbookError):
    """``runbook resume`` of a run interrupted by a daily quota before the quota resets; exit 4
    (the run stays interrupted; ``--force`` tries anyway)."""

    exit_code = EXIT_INTERRUPTED


class StepError(RunbookError):
    exit_code = EXIT_FAILED
