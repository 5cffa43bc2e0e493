"""The model registry's entries (`hubctl registry`): name, source, revision, layout, state and
the files (path, size, sha256, chunks) as JSON; the bytes live in the object store.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registry_entry",
        sa.Column("name", sqlmodel.AutoString(length=63), nullable=False),
        sa.Column("source", sqlmodel.AutoString(length=300), nullable=False),
        sa.Column("revision", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("layout", sqlmodel.AutoString(length=16), nullable=False),
        sa.Column("repo", sqlmodel.AutoString(length=200), nullable=False),
        sa.Column("state", sqlmodel.AutoString(length=16), nullable=False),
        sa.Column("message", sqlmodel.AutoString(length=2000), nullable=False),
        sa.Column("chunk_size", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("pulled", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("registry_entry")
