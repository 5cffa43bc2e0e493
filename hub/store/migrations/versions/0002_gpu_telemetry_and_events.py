"""GPU telemetry, state and processes; node events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TEXT_COLUMNS = {"state": 8, "gfx_target": 16, "pci_bus_id": 32, "driver_version": 32}


def upgrade() -> None:
    with op.batch_alter_table("gpu") as batch:
        for name, length in TEXT_COLUMNS.items():
            default = "ok" if name == "state" else ""
            batch.add_column(
                sa.Column(name, sqlmodel.AutoString(length=length), nullable=False,
                          server_default=default)
            )  # fmt: skip
        batch.add_column(sa.Column("memory_free_mb", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("utilization_percent", sa.Integer(), nullable=True))
        for name in ("temperature_c", "power_draw_w", "power_limit_w"):
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
        batch.add_column(sa.Column("processes", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("gpu") as batch:  # defaults were only for existing rows
        for name in (*TEXT_COLUMNS, "processes"):
            batch.alter_column(name, server_default=None)
    op.create_table(
        "node_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sqlmodel.AutoString(length=32), nullable=False),
        sa.Column("message", sqlmodel.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["node.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_node_event_node_id"), "node_event", ["node_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_node_event_node_id"), table_name="node_event")
    op.drop_table("node_event")
    with op.batch_alter_table("gpu") as batch:
        for name in (*TEXT_COLUMNS, "memory_free_mb", "utilization_percent", "temperature_c",
                     "power_draw_w", "power_limit_w", "processes"):  # fmt: skip
            batch.drop_column(name)
