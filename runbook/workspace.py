"""The workspace: the folder of runbook.yaml, with state/, handoffs/ and templates/ beside it.

This module and ``config`` are the only places that read the environment; everything downstream
receives a :class:`Workspace`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runbook.config import CONFIG_FILENAME, RunbookConfig, load_config
from runbook.errors import ConfigError

ENV_CONFIG = "RUNBOOK_CONFIG"
ENV_DATABASE_URL = "RUNBOOK_DATABASE_URL"
ENV_SERVE_TOKEN = "RUNBOOK_SERVE_TOKEN"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def find_config(start: Path, explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Locate runbook.yaml: ``--config``, then ``RUNBOOK_CONFIG``, then the current folder or a parent."""
    environ = os.environ if environ is None else environ
    chosen = explicit or environ.get(ENV_CONFIG)
    if chosen:
        path = Path(chosen).expanduser()
        if path.is_dir():
            path = path / CONFIG_FILENAME
        if not path.exists():
            raise ConfigError("file not found", file=str(path))
        return path.resolve()
    for folder in [start, *start.parents]:
        candidate = folder / CONFIG_FILENAME
        if candidate.is_file():
            return candidate.resolve()
    raise ConfigError(
        f"no {CONFIG_FILENAME} in {start} or its parents: pass --config PATH or set {ENV_CONFIG}"
    )


@dataclass(frozen=True)
class Workspace:
    """A loaded runbook.yaml and the folders that belong to it."""

    config_path: Path
    config: RunbookConfig
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)

    @classmethod
    def load(cls, explicit: str | None = None, cwd: Path | None = None) -> Workspace:
        environ = dict(os.environ)
        path = find_config(cwd or Path.cwd(), explicit, environ)
        return cls(config_path=path, config=load_config(path), environ=environ)

    @property
    def root(self) -> Path:
        return self.config_path.parent

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def handoffs_dir(self) -> Path:
        return self.root / "handoffs"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def database_url(self) -> str:
        url = self.environ.get(ENV_DATABASE_URL) or self.config.state.database_url
        if not url:
            return f"sqlite:///{self.state_dir / 'runbook.db'}"
        url = self.expand_env(url, "state.database_url")
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            relative = url.removeprefix("sqlite:///")
            if relative and relative != ":memory:":
                return f"sqlite:///{(self.root / relative).resolve()}"
        return url

    @property
    def lease_seconds(self) -> float | None:
        """``RUNBOOK_LEASE_SECONDS``: how long a claimed task stays held without a heartbeat (60 s by
        default; tests shorten it to see a killed worker's tasks taken over quickly)."""
        return self._seconds("RUNBOOK_LEASE_SECONDS")

    @property
    def store_retry_seconds(self) -> float | None:
        """``RUNBOOK_STORE_RETRY_SECONDS``: how long a controller or worker keeps trying a state
        store whose connection dropped before it stops (20 s by default)."""
        return self._seconds("RUNBOOK_STORE_RETRY_SECONDS")

    def _seconds(self, name: str) -> float | None:
        value = self.environ.get(name)
        try:
            seconds = float(value) if value else None
        except ValueError:
            seconds = -1.0
        if seconds is not None and not seconds > 0:
            raise ConfigError(f"{name} must be a positive number of seconds (got {value!r})")
        return seconds

    @property
    def serve_token(self) -> str | None:
        """``RUNBOOK_SERVE_TOKEN``: the secret every request to ``runbook serve`` must carry."""
        return self.environ.get(ENV_SERVE_TOKEN) or None

    def resolve(self, relative: str) -> Path:
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.root / path

    def expand_env(self, value: str, where: str) -> str:
        """Replace ``${NAME}`` with the environment variable NAME; a missing variable is a ConfigError."""

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.environ:
                raise ConfigError(
                    f"environment variable {name} is not set", file=str(self.config_path), path=where
                )
            return self.environ[name]

        return _ENV_REF.sub(replace, value)

    def secret_values(self) -> list[str]:
        """Values this config takes from the environment: they are redacted from logs and reports."""
        names: set[str] = set()
        texts: list[str] = [self.config.state.database_url or ""]
        for proc in self.config.processors.values():
            texts += list(proc.env.values())
            if proc.http is not None:
                texts += [proc.http.url, *proc.http.headers.values()]
        texts += [target.url for target in self.config.notify]
        for text in texts:
            names.update(_ENV_REF.findall(text))
        if self.config.warehouse.credentials_env:
            names.add(self.config.warehouse.credentials_env)
        names.add(ENV_SERVE_TOKEN)
        return sorted({self.environ[n] for n in names if len(self.environ.get(n, "")) >= 4})
