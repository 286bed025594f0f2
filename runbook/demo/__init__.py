"""The demo workspace: the seeds' NBA backfill as SQL MERGE steps over a synthetic DuckDB warehouse.

:func:`create_demo_workspace` writes ``runbook.yaml`` and ``sql/`` into a folder and generates
``state/warehouse.duckdb`` (see :mod:`runbook.demo.dataset`) the first time. The demo's default date
range is :data:`DEMO_START` to :data:`DEMO_END`: two seasons of about 66 game days each.
"""

from __future__ import annotations

import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from runbook.demo.dataset import DEFAULT_SEED, DEMO_END, DEMO_START, OFF_DAYS, SEASONS, generate_dataset

__all__ = [
    "DEFAULT_SEED",
    "DEMO_NAME",
    "DEMO_END",
    "DEMO_START",
    "OFF_DAYS",
    "SEASONS",
    "WAREHOUSE_PATH",
    "create_demo_workspace",
    "generate_dataset",
]

DEMO_NAME = "nba-demo"
CONFIG_NAME = "runbook.yaml"
SQL_FOLDER = "sql"
WAREHOUSE_PATH = Path("state") / "warehouse.duckdb"  # relative to the workspace, as in runbook.yaml


def create_demo_workspace(root: Path, *, seed: int = DEFAULT_SEED) -> Path:
    """Make ``root`` a demo workspace and return the path of its runbook.yaml.

    Files that already exist are kept: calling this again never overwrites an edited runbook.yaml
    or SQL file, and never touches an existing warehouse or state database. The warehouse is
    generated into a temporary file and renamed, so an interrupted call leaves none behind.
    """
    root = Path(root)
    package = resources.files(__name__)
    _copy_missing(package / CONFIG_NAME, root / CONFIG_NAME)
    # The SQL files the workspace's runbook.yaml names and lacks (a workspace may also point at
    # the package's own files, as the repository's root runbook.yaml does).
    for relative in _sql_files(root / CONFIG_NAME):
        target = root / relative
        source = package.joinpath(SQL_FOLDER, Path(relative).name)
        if not target.exists() and source.is_file():
            _copy_missing(source, target)
    warehouse = root / WAREHOUSE_PATH
    if not warehouse.exists():
        warehouse.parent.mkdir(parents=True, exist_ok=True)
        partial = warehouse.with_name(warehouse.name + ".partial")
        partial.unlink(missing_ok=True)
        try:
            generate_dataset(partial, seed=seed)
            os.replace(partial, warehouse)
        finally:
            partial.unlink(missing_ok=True)
    return root / CONFIG_NAME


def _copy_missing(source: Traversable, target: Path) -> None:
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")


def _sql_files(config: Path) -> list[str]:
    from runbook.config import load_config

    return sorted({p.sql_file for p in load_config(config).processors.values() if p.sql_file})
