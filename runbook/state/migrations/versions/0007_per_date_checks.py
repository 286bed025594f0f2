"""checks per date: one row per date judged, per-date gates, sample rows and rebuild changes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:00:00

``check_date`` holds one row per date a ``per_date: true`` check judged (its metrics, conditions
and verdict): the baselines of later dates (``median(rows, 14)``) and the before/after comparison
of a rebuild (``stable:``) read it. ``check_result`` says whether a result is per date, which
dates failed (as ranges with their values), the sample rows of a failure and the dates a rebuild
changed. A ``gate`` may cover a window of dates (``start_date``/``end_date``; empty: the whole run),
so that the downstream of a date waits only for the verdict on that date.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("check_result") as batch:
        batch.add_column(sa.Column("per_date", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("failed_dates", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("samples", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("changed_dates", sa.JSON(), nullable=True))
    op.drop_index("ix_gate_run_processor", table_name="gate")
    with op.batch_alter_table("gate") as batch:
        batch.add_column(sa.Column("start_date", sa.String(length=10), nullable=False, server_default=""))
        batch.add_column(sa.Column("end_date", sa.String(length=10), nullable=False, server_default=""))
    op.create_index("ix_gate_run_processor", "gate", ["run_id", "processor", "start_date"], unique=True)
    op.create_table(
        "check_date",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("processor", sa.String(length=128), nullable=False),
        sa.Column("check_name", sa.String(length=128), nullable=False),
        sa.Column("date", sa.String(length=10), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["result_id"], ["check_result.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_check_date_check_date", "check_date", ["processor", "check_name", "date"])
    op.create_index("ix_check_date_result_id", "check_date", ["result_id"])


def downgrade() -> None:
    op.drop_index("ix_check_date_result_id", table_name="check_date")
    op.drop_index("ix_check_date_check_date", table_name="check_date")
    op.drop_table("check_date")
    op.drop_index("ix_gate_run_processor", table_name="gate")
    with op.batch_alter_table("gate") as batch:
        batch.drop_column("end_date")
        batch.drop_column("start_date")
    op.create_index("ix_gate_run_processor", "gate", ["run_id", "processor"], unique=True)
    with op.batch_alter_table("check_result") as batch:
        batch.drop_column("changed_dates")
        batch.drop_column("samples")
        batch.drop_column("failed_dates")
        batch.drop_column("per_date")
