"""API keys of the gateway (`hubctl keys`): each key's sha256, never the secret; a name is
unique among the keys that are not revoked.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.AutoString(length=63), nullable=False),
        sa.Column("prefix", sqlmodel.AutoString(length=16), nullable=False),
        sa.Column("sha256", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sqlmodel.AutoString(length=300), nullable=False),
        sa.Column("revoked", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sha256"),
    )
    live = sa.text("revoked IS NULL")
    op.create_index("ix_api_key_live_name", "api_key", ["name"], unique=True,
                    sqlite_where=live, postgresql_where=live)  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_api_key_live_name", table_name="api_key")
    op.drop_table("api_key")
