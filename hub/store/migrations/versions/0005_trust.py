"""Join tokens, issued client certificates and the audit log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, length: int | None = None) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sqlmodel.AutoString(length=length), nullable=False)


def upgrade() -> None:
    op.create_table(
        "join_token",
        _text("id", 16),
        _text("secret_hash", 64),
        _text("role", 16),
        _text("name", 253),
        sa.Column("labels", sa.JSON(), nullable=False),
        _text("created_by", 300),
        _when("created"),
        _when("expires"),
        _when("used", nullable=True),
        _text("used_by", 300),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "credential",
        _text("serial", 48),
        _text("identity", 300),
        _text("role", 16),
        sa.Column("labels", sa.JSON(), nullable=False),
        _when("issued"),
        _when("not_after"),
        _when("revoked", nullable=True),
        _text("revoked_by", 300),
        sa.PrimaryKeyConstraint("serial"),
    )
    op.create_index(op.f("ix_credential_identity"), "credential", ["identity"])
    op.create_table(
        "audit_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        _when("at"),
        _text("identity", 300),
        _text("peer", 128),
        _text("action", 96),
        _text("detail"),
        _text("result", 32),
        _text("message"),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("audit_entry")
    op.drop_index(op.f("ix_credential_identity"), table_name="credential")
    op.drop_table("credential")
    op.drop_table("join_token")
