"""Code versions: what says that a date built earlier was built by the code of today.

A processor's version is its ``version:`` (a string, or the output of a command such as
``git rev-parse --short HEAD``); without one it is a hash of the step's definition, so editing a
command or a SQL file makes the dates built before *stale*.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable

from runbook.config import RunbookConfig, VersionCommand
from runbook.errors import ConfigError

VERSION_COMMAND_TIMEOUT_SECONDS = 60


def resolve_versions(config: RunbookConfig, names: Iterable[str], cwd: str) -> dict[str, str]:
    """The code version of each processor: declared, the output of a command, or a definition hash."""
    versions: dict[str, str] = {}
    for name in names:
        declared = config.processors[name].version
        if isinstance(declared, VersionCommand):
            versions[name] = _run_version_command(declared.command, name, cwd)
        else:
            versions[name] = declared or f"cfg-{config.processors[name].definition_hash()}"
    return versions


def _run_version_command(command: str, name: str, cwd: str) -> str:
    try:
        out = subprocess.run(
            command,
            shell=True,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=VERSION_COMMAND_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError("version command timed out", path=f"processors.{name}.version") from None
    if out.returncode != 0:
        raise ConfigError(
            f"version command failed with exit code {out.returncode}: {out.stderr.strip()[:200]}",
            path=f"processors.{name}.version.command",
        )
    return out.stdout.strip()[:128] or "unknown"
