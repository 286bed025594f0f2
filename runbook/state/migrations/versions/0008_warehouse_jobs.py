"""warehouse jobs: each task's job id and cost; when an interrupted run may resume

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 08:00:00

``task.job_id`` is the warehouse job id of the task's current attempt, stored before the job is
submitted so that whoever takes the task over re-attaches to it instead of running it twice.
``task.bytes_processed``, ``bytes_billed`` and ``slot_ms`` are what the attempt cost (BigQuery's
job statistics). ``run.resume_after`` is when a daily quota that interrupted the run resets.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("job_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("bytes_processed", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("bytes_billed", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("slot_ms", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("resume_after", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.drop_column("resume_after")
    with op.batch_alter_table("task") as batch:
        batch.drop_column("slot_ms")
        batch.drop_column("bytes_billed")
        batch.drop_column("bytes_processed")
        batch.drop_column("job_id")
