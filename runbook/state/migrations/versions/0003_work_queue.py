"""the work queue: ownership epochs, dependencies and gates in the store, workers and pools

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 05:10:00

Readiness moves from one controller's memory into the store, so that any process on any machine
can claim a ready task: ``task.waits`` counts a task's unsettled dependencies (``task_dep`` to
upstream tasks, ``gate_dep`` to blocking gates), ``gate`` holds each processor's checks per run,
``run.epoch`` fences the run's owner, ``worker`` lists the processes that claim, ``pool`` the
shared concurrency pools. Runs recorded before have no dependency rows: resume rebuilds them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("epoch", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("stop_requested_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("waits", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("pool", sa.String(length=64), nullable=True))
    op.create_index("ix_task_ready", "task", ["run_id", "status", "waits", "seq"])
    op.create_index("ix_task_run_processor_date", "task", ["run_id", "processor", "date"])
    # The run's counts now also tell which worker did what.
    op.drop_index("ix_task_run_outcome", table_name="task")
    op.create_index(
        "ix_task_run_outcome",
        "task",
        [
            "run_id",
            "processor",
            "status",
            "skip_reason",
            "started_at",
            "finished_at",
            "rows_affected",
            "claimed_by",
        ],
    )
    op.create_table(
        "task_dep",
        sa.Column("upstream_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["task.id"]),
        sa.ForeignKeyConstraint(["upstream_id"], ["task.id"]),
        sa.PrimaryKeyConstraint("upstream_id", "task_id"),
    )
    op.create_index("ix_task_dep_task", "task_dep", ["task_id"])
    op.create_table(
        "gate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("processor", sa.String(length=128), nullable=False),
        sa.Column("blocking", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("waits", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_gate_run_processor", "gate", ["run_id", "processor"], unique=True)
    op.create_table(
        "gate_dep",
        sa.Column("gate_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["gate_id"], ["gate.id"]),
        sa.ForeignKeyConstraint(["task_id"], ["task.id"]),
        sa.PrimaryKeyConstraint("gate_id", "task_id"),
    )
    op.create_table(
        "worker",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tasks_done", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "pool",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("effective_size", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    for table in ("pool", "worker", "gate_dep", "gate", "task_dep"):
        op.drop_table(table)
    op.drop_index("ix_task_ready", table_name="task")
    op.drop_index("ix_task_run_processor_date", table_name="task")
    op.drop_index("ix_task_run_outcome", table_name="task")
    op.create_index(
        "ix_task_run_outcome",
        "task",
        ["run_id", "processor", "status", "skip_reason", "started_at", "finished_at", "rows_affected"],
    )
    with op.batch_alter_table("task") as batch:
        batch.drop_column("pool")
        batch.drop_column("waits")
    with op.batch_alter_table("run") as batch:
        batch.drop_column("stop_requested_at")
        batch.drop_column("epoch")
