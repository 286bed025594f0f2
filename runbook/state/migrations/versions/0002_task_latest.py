"""task_latest: the newest task of each outcome per processor and date; a covering index for run counts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 04:40:00

Coverage and the handoff read what state each date is in from ``task_latest`` instead of
searching every rerun of every date in ``task``; it is filled here from the tasks there are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BACKFILL = """
INSERT INTO task_latest (processor, date, built_id, built_run_id, built_end_date, built_version, built_rows, built_at, attempt_id, attempt_run_id, attempt_end_date, attempt_status, attempt_tries, attempt_exit_code, skipped_id, skipped_run_id, skipped_end_date, skip_reason)
SELECT g.processor, g.date, b.id, b.run_id, b.end_date, b.code_version, b.rows_affected, b.finished_at, a.id, a.run_id, a.end_date, a.status, a.attempt, a.exit_code, s.id, s.run_id, s.end_date, s.skip_reason
FROM (SELECT processor, date, MAX(CASE WHEN status IN ('succeeded') THEN id END) AS built, MAX(CASE WHEN status IN ('succeeded', 'failed', 'blocked') THEN id END) AS attempt, MAX(CASE WHEN status IN ('skipped') THEN id END) AS skipped FROM task
      WHERE status IN ('succeeded', 'failed', 'blocked', 'skipped') GROUP BY processor, date) g
LEFT JOIN task b ON b.id = g.built
LEFT JOIN task a ON a.id = g.attempt
LEFT JOIN task s ON s.id = g.skipped
"""


def upgrade() -> None:
    op.create_table(
        "task_latest",
        sa.Column("processor", sa.String(length=128), nullable=False),
        sa.Column("date", sa.String(length=10), nullable=False),
        sa.Column("built_id", sa.Integer(), nullable=True),
        sa.Column("built_run_id", sa.Integer(), nullable=True),
        sa.Column("built_end_date", sa.String(length=10), nullable=True),
        sa.Column("built_version", sa.String(length=128), nullable=True),
        sa.Column("built_rows", sa.Integer(), nullable=True),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("attempt_run_id", sa.Integer(), nullable=True),
        sa.Column("attempt_end_date", sa.String(length=10), nullable=True),
        sa.Column("attempt_status", sa.String(length=16), nullable=True),
        sa.Column("attempt_tries", sa.Integer(), nullable=True),
        sa.Column("attempt_exit_code", sa.Integer(), nullable=True),
        sa.Column("skipped_id", sa.Integer(), nullable=True),
        sa.Column("skipped_run_id", sa.Integer(), nullable=True),
        sa.Column("skipped_end_date", sa.String(length=10), nullable=True),
        sa.Column("skip_reason", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("processor", "date"),
    )
    op.execute(BACKFILL)
    op.create_index(
        "ix_task_run_outcome",
        "task",
        ["run_id", "processor", "status", "skip_reason", "started_at", "finished_at", "rows_affected"],
    )


def downgrade() -> None:
    op.drop_index("ix_task_run_outcome", table_name="task")
    op.drop_table("task_latest")
