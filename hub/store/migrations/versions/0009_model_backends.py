"""Model backends: the environment a llama.cpp model deployment runs from, and the backend a
model was switched to (`hubctl models switch-backend`).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_deployment") as batch:
        batch.add_column(
            sa.Column(
                "environment", sqlmodel.AutoString(length=64), nullable=False, server_default=""
            )
        )
    op.create_table(
        "model_backend",
        sa.Column("model", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("environment", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model"),
    )


def downgrade() -> None:
    op.drop_table("model_backend")
    with op.batch_alter_table("model_deployment") as batch:
        batch.drop_column("environment")
