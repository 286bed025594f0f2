"""The BigQuery emulator (PyPI ``bqemulator``) as a real subprocess.

bqemulator pins its own duckdb/sqlglot, so it lives in its own virtualenv (``make bqemu``); its
interpreter comes from ``RUNBOOK_BQEMU_PYTHON`` or ``<repo>/.venv-bqemu/bin/python``. Tests that
need it skip, saying why, when that interpreter or a piece the emulator needs is missing.

How it is started: ``<python> -c <launcher> start --rest-host 127.0.0.1 --rest-port N
--grpc-host 127.0.0.1 --grpc-port M --project P`` (the launcher ends in ``bqemulator.cli:main``),
in-memory (``--ephemeral``, the default), and it is ready when ``GET /readyz`` answers 200.
The emulator insists on DuckDB's ``spatial`` extension, which DuckDB downloads on first use; this
machine has no network, so the launcher links the copy that the ``duckdb-extension-spatial``
wheel ships into the DuckDB extension folder of a private ``HOME`` first. Data is seeded through
the real client (DDL, ``insert_rows_json``). To make it misbehave, put the proxy of
tests/bqproxy.py in front of it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BQEMU_PYTHON_VARIABLE = "RUNBOOK_BQEMU_PYTHON"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_PYTHON = REPO / ".venv-bqemu" / "bin" / "python"
STARTUP_SECONDS = 60.0
STOP_SECONDS = 10.0
START_TRIES = 3  # attempts to start the emulator when a chosen port was taken meanwhile
MISSING_EXIT_CODE = 3
NEEDS = "bqemulator numpy duckdb-extension-spatial"

# Runs inside the emulator's interpreter: check what it needs, provide the spatial extension
# offline, then hand over to bqemulator's own command line.
_LAUNCHER = """
import importlib.util, os, pathlib, sys
missing = [m for m in ("bqemulator", "numpy", "duckdb_extension_spatial") if importlib.util.find_spec(m) is None]
if missing:
    sys.stderr.write("bqemu-missing: " + ", ".join(missing) + "\\n")
    sys.exit(3)
import duckdb, duckdb_extension_spatial
version = "v" + duckdb.__version__
source = pathlib.Path(duckdb_extension_spatial.__file__).parent / "extensions" / version / "spatial.duckdb_extension"
if not source.exists():
    sys.stderr.write(f"bqemu-missing: duckdb-extension-spatial for duckdb {version}\\n")
    sys.exit(3)
platform = duckdb.execute("PRAGMA platform").fetchone()[0]
target = pathlib.Path(os.environ["HOME"], ".duckdb", "extensions", version, platform, "spatial.duckdb_extension")
target.parent.mkdir(parents=True, exist_ok=True)
if not target.exists():
    target.symlink_to(source)
sys.argv[0] = "bqemulator"
from bqemulator.cli import main
main()
"""


def emulator_python_candidate() -> Path:
    """Where the emulator's interpreter should be: ``$RUNBOOK_BQEMU_PYTHON``, else ``.venv-bqemu``."""
    configured = os.environ.get(BQEMU_PYTHON_VARIABLE)
    return Path(configured) if configured else DEFAULT_PYTHON


def emulator_python() -> Path | None:
    """The emulator's interpreter, or None when it is not there."""
    candidate = emulator_python_candidate()
    return candidate if candidate.exists() else None


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on 127.0.0.1 that nothing listens on right now (the sockets
    are held until all are chosen, so the same port is not handed out twice)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class Emulator:
    """A running emulator: its REST ``endpoint``, default ``project`` and log file."""

    endpoint: str
    project: str
    log: Path

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def running_emulator(python: Path, workdir: Path, project: str = "proj") -> Iterator[Emulator]:
    """Start the emulator on free 127.0.0.1 ports, wait until ready, stop it afterwards.

    Skips the test when the emulator's virtualenv lacks a piece (the message names it and the
    fix); fails it when the emulator starts but does not become ready.
    """
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BQEMU_", "RUNBOOK_", "BIGQUERY_"))}
    env.update(HOME=str(home), BQEMU_ENABLE_FORMAT_EXTENSIONS="false", BQEMU_METRICS_ENABLED="false")
    for tries_left in range(START_TRIES - 1, -1, -1):
        # A port free when chosen can be taken by another process before the emulator binds it:
        # then the emulator exits at once, and it is started again on other ports.
        rest_port, grpc_port = free_ports(2)
        command = [
            str(python),
            "-c",
            _LAUNCHER,
            "start",
            "--rest-host",
            "127.0.0.1",
            "--rest-port",
            str(rest_port),
        ]
        command += ["--grpc-host", "127.0.0.1", "--grpc-port", str(grpc_port), "--project", project]
        command += ["--log-level", "warning", "--log-format", "console"]
        emulator = Emulator(f"http://127.0.0.1:{rest_port}", project, workdir / "bqemulator.log")
        with emulator.log.open("wb") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        try:
            if not _wait_until_ready(process, emulator, retry=tries_left > 0):
                continue
            yield emulator
            return
        finally:
            process.terminate()
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_ready(process: subprocess.Popen[bytes], emulator: Emulator, *, retry: bool) -> bool:
    """True once the emulator answers; False when it could not bind its ports and ``retry``."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        code = process.poll()
        if code == MISSING_EXIT_CODE:
            pytest.skip(
                f"BigQuery emulator cannot start: {emulator.log_tail(1)}: install {NEEDS} into the "
                f"virtualenv of {process.args[0]} (`make bqemu`)"
            )
        if code is not None:
            log = emulator.log_tail()
            if retry and ("Failed to bind" in log or "address already in use" in log.lower()):
                return False
            pytest.fail(f"BigQuery emulator exited with code {code}:\n{log}")
        with suppress(OSError), urllib.request.urlopen(f"{emulator.endpoint}/readyz", timeout=1) as answer:
            if answer.status == 200:
                return True
        time.sleep(0.1)
    pytest.fail(f"BigQuery emulator not ready after {STARTUP_SECONDS:.0f}s:\n{emulator.log_tail()}")


def emulator_fixture(*, project: str = "proj", scope: Any = "module") -> Any:
    """A fixture factory: ``bqemu = emulator_fixture()`` in a test module gives an :class:`Emulator`.

    One emulator per ``scope`` (a module by default: starting one takes a few seconds).
    """

    @pytest.fixture(scope=scope)
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
        python = emulator_python()
        if python is None:
            pytest.skip(
                f"no BigQuery emulator interpreter at {emulator_python_candidate()}: run `make bqemu` "
                f"or set {BQEMU_PYTHON_VARIABLE}"
            )
        with running_emulator(python, tmp_path_factory.mktemp("bqemu"), project) as emulator:
            yield emulator

    return fixture
