"""GPU assignments per configuration and service: in force, previous, pinned.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gpu_assignment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("configuration", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("service_name", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("set_name", sqlmodel.AutoString(length=16), nullable=False),
        sa.Column("node", sqlmodel.AutoString(length=253), nullable=False),
        sa.Column("gpu_indices", sa.JSON(), nullable=False),
        sa.Column("strategy", sqlmodel.AutoString(length=32), nullable=False),
        sa.Column("vram_gb", sa.Float(), nullable=False),
        sa.Column("vram_budget_override", sa.Float(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("configuration", "service_name", "set_name", name="uq_gpu_assignment"),
    )
    op.create_index(op.f("ix_gpu_assignment_configuration"), "gpu_assignment", ["configuration"])


def downgrade() -> None:
    op.drop_index(op.f("ix_gpu_assignment_configuration"), table_name="gpu_assignment")
    op.drop_table("gpu_assignment")
