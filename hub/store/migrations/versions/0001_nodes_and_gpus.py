"""Nodes and their GPUs.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "node",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.AutoString(length=253), nullable=False),
        sa.Column("agent_id", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.AutoString(length=16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("hostname", sqlmodel.AutoString(length=253), nullable=False),
        sa.Column("address", sqlmodel.AutoString(length=128), nullable=False),
        sa.Column("agent_version", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("probe", sqlmodel.AutoString(length=32), nullable=False),
        sa.Column("probe_error", sqlmodel.AutoString(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_node_name"), "node", ["name"], unique=True)
    op.create_table(
        "gpu",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("uuid", sqlmodel.AutoString(length=96), nullable=False),
        sa.Column("name", sqlmodel.AutoString(length=128), nullable=False),
        sa.Column("vendor", sqlmodel.AutoString(length=16), nullable=False),
        sa.Column("memory_total_mb", sa.Integer(), nullable=False),
        sa.Column("memory_used_mb", sa.Integer(), nullable=False),
        sa.Column("compute_capability", sqlmodel.AutoString(length=16), nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["node.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("node_id", "index", name="uq_gpu_node_index"),
    )
    op.create_index(op.f("ix_gpu_node_id"), "gpu", ["node_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_gpu_node_id"), table_name="gpu")
    op.drop_table("gpu")
    op.drop_index(op.f("ix_node_name"), table_name="node")
    op.drop_table("node")
