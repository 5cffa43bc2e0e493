"""Model deployments: the model each node was switched to, with its GPUs and port.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_deployment",
        sa.Column("node", sqlmodel.AutoString(length=253), nullable=False),
        sa.Column("model", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("engine", sqlmodel.AutoString(length=16), nullable=False),
        sa.Column("project", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("gpus", sa.JSON(), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("digest", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("node"),
    )
    op.create_index(op.f("ix_model_deployment_model"), "model_deployment", ["model"])


def downgrade() -> None:
    op.drop_index(op.f("ix_model_deployment_model"), table_name="model_deployment")
    op.drop_table("model_deployment")
