"""Agents' progress events stored with operations, and how many were not kept per node.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("operation_event") as table:
        table.add_column(sa.Column("progress", sa.Boolean(), nullable=False, server_default="0"))
        table.add_column(sa.Column("percent", sa.Float(), nullable=True))
    with op.batch_alter_table("operation_node") as table:
        table.add_column(
            sa.Column("progress_dropped", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("operation_node") as table:
        table.drop_column("progress_dropped")
    with op.batch_alter_table("operation_event") as table:
        table.drop_column("percent")
        table.drop_column("progress")
