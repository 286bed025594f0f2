"""notifications and adopted runs: an outbox of webhook deliveries, and where a run came from

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-02 09:00:00

``notification`` holds one row per event of a run and ``notify:`` target: inserting it claims the
send (its ``key`` is unique), so two processes that notice the same event never both send it.
``run.origin`` tells runs that runbook planned and ran (``run``) from processes started outside
it and recorded with ``runbook adopt`` (``adopted``); every run recorded before is a ``run``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("origin", sa.String(length=16), nullable=False, server_default="run"))
    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_notification_run_id", "notification", ["run_id"])
    op.create_index("ix_notification_status_lease", "notification", ["status", "lease_until"])


def downgrade() -> None:
    op.drop_index("ix_notification_status_lease", table_name="notification")
    op.drop_index("ix_notification_run_id", table_name="notification")
    op.drop_table("notification")
    with op.batch_alter_table("run") as batch:
        batch.drop_column("origin")
