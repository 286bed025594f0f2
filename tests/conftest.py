"""Shared fixtures: real workspaces on disk, a real `runbook` subprocess, real PostgreSQL databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("RUNBOOK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _clean_runbook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's RUNBOOK_* settings."""
    for name in list(os.environ):
        if name.startswith("RUNBOOK_") and name != "RUNBOOK_BQEMU_PYTHON":
            monkeypatch.delenv(name, raising=False)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class WorkspaceFixture:
    root: Path
    env: dict[str, str]

    @property
    def config(self) -> Path:
        return self.root / "runbook.yaml"

    @property
    def db(self) -> Path:
        return self.root / "state" / "runbook.db"

    def write(self, yaml_text: str) -> None:
        self.config.write_text(textwrap.dedent(yaml_text), encoding="utf-8")

    def runbook(
        self, *args: str, timeout: float = 120, check: bool = False, env: dict[str, str] | None = None
    ) -> Result:
        """Run the real CLI in a subprocess with this workspace as the current folder."""
        proc = subprocess.run(
            [sys.executable, "-m", "runbook", *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"runbook {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return result

    def cli(self, *args: str, check: bool = False, env: dict[str, str] | None = None) -> Result:
        """Run a command in this process through click's test runner (no Python start-up per call).

        For commands that read or record; detach, signals, kill -9 and resume keep using
        :meth:`runbook`, where a real process is the point.
        """
        from click.testing import CliRunner

        from runbook.cli import cli

        extra = {k: v for k, v in self.env.items() if k.startswith("RUNBOOK_")} | (env or {})
        previous = Path.cwd()
        os.chdir(self.root)
        try:
            outcome = CliRunner().invoke(cli, list(args), env=extra, catch_exceptions=False)
        finally:
            os.chdir(previous)
        result = Result(outcome.exit_code, outcome.stdout, outcome.stderr)
        if check and outcome.exit_code != 0:
            raise AssertionError(
                f"runbook {' '.join(args)} exited {outcome.exit_code}\n{outcome.stdout}\n{outcome.stderr}"
            )
        return result


@pytest.fixture
def make_workspace(tmp_path: Path) -> Callable[..., WorkspaceFixture]:
    """A workspace folder with the given runbook.yaml (dedented) and a clean environment."""

    def make(yaml_text: str, name: str = "ws", extra_env: dict[str, str] | None = None) -> WorkspaceFixture:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_") or k == "RUNBOOK_BQEMU_PYTHON"
        }
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(root)])
        env.update(extra_env or {})
        ws = WorkspaceFixture(root, env)
        ws.write(yaml_text)
        return ws

    return make


def _pg_available() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    url = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"no PostgreSQL server at {url}: {exc}".splitlines()[0]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    reason = _pg_available()
    if reason:
        pytest.skip(reason)
    import psycopg

    admin = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"runbook_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="Rewrite tests/golden/ from what the code renders now (review the diff before committing).",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """Whether golden files are rewritten: only with an explicit --update-golden."""
    return bool(request.config.getoption("--update-golden"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print what the chaos suite tried (its tests record the counts as a property)."""
    lines = []
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
        for name, value in getattr(report, "user_properties", []):
            if name == "chaos" and report.when == "call":
                counts = ", ".join(f"{k}: {v}" for k, v in value.items() if k not in ("store", "seed"))
                lines.append(f"{value['store']} (CHAOS_SEED={value['seed']}): {counts}")
    if lines:
        terminalreporter.section("chaos suite: what it tried")
        for line in sorted(lines):
            terminalreporter.write_line(line)


@pytest.fixture
def hooks() -> Iterator[Callable[[Callable[[int], int]], Any]]:
    """Start real webhook receivers on 127.0.0.1 (tests/webhooks.py): ``hooks(lambda n: 200)``
    answers every request 200; all are shut down after the test."""
    from webhooks import start_hook

    started: list[Any] = []

    def make(answers: Callable[[int], int]) -> Any:
        hook = start_hook(answers)
        started.append(hook)
        return hook

    yield make
    for hook in started:
        hook.server.shutdown()
        hook.server.server_close()


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WorkspaceFixture, Any]]:
    """A workspace with every kind of heat-map cell and a live run (tests/serve_helpers.py), served by
    a real `runbook serve` on 127.0.0.1 with the token serve_helpers.TOKEN: one per test worker."""
    from serve_helpers import TOKEN, build_workspace, start_server, teardown

    ws = build_workspace(tmp_path_factory.mktemp("served") / "ws")
    server = start_server(ws, token=TOKEN)
    try:
        yield ws, server
    finally:
        teardown(ws, server)
