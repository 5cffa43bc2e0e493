"""Each node's podman preflight findings, and the warnings a check found per node.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("node") as table:
        table.add_column(sa.Column("preflight", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("operation_node") as table:
        table.add_column(sa.Column("warnings", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("operation_node") as table:
        table.drop_column("warnings")
    with op.batch_alter_table("node") as table:
        table.drop_column("preflight")
