"""Switch state on nodes with their transitions; operations, their nodes and events.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, length: int | None = None) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sqlmodel.AutoString(length=length), nullable=False)


def upgrade() -> None:
    with op.batch_alter_table("node") as batch:
        batch.add_column(sa.Column("state", sqlmodel.AutoString(length=16), nullable=False,
                                   server_default="stopped"))  # fmt: skip
        batch.add_column(sa.Column("configuration", sqlmodel.AutoString(length=64),
                                   nullable=False, server_default=""))  # fmt: skip
        batch.add_column(_when("state_since", nullable=True))
        batch.add_column(sa.Column("state_message", sqlmodel.AutoString(), nullable=False,
                                   server_default=""))  # fmt: skip
    with op.batch_alter_table("node") as batch:
        for name in ("state", "configuration", "state_message"):
            batch.alter_column(name, server_default=None)
    op.create_table(
        "node_transition",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        _when("at"),
        _text("from_state", 16),
        _text("to_state", 16),
        _text("configuration", 64),
        _text("operation_id", 32),
        _text("message"),
        sa.ForeignKeyConstraint(["node_id"], ["node.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_node_transition_node_id"), "node_transition", ["node_id"])
    op.create_table(
        "operation",
        _text("id", 32),
        _text("kind", 16),
        _text("configuration", 64),
        _text("status", 16),
        sa.Column("check", sa.Boolean(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        _when("created"),
        _when("finished", nullable=True),
        _text("message"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_operation_status"), "operation", ["status"])
    op.create_table(
        "operation_node",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operation_id", sa.String(length=32), nullable=False),
        _text("node", 253),
        sa.Column("position", sa.Integer(), nullable=False),
        _text("result", 16),
        _text("message"),
        _when("started", nullable=True),
        _when("finished", nullable=True),
        sa.ForeignKeyConstraint(["operation_id"], ["operation.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("operation_id", "node", name="uq_operation_node"),
    )
    op.create_index(op.f("ix_operation_node_operation_id"), "operation_node", ["operation_id"])
    op.create_table(
        "operation_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operation_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        _when("at"),
        _text("node", 253),
        _text("step", 16),
        _text("message"),
        sa.ForeignKeyConstraint(["operation_id"], ["operation.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_operation_event_operation_id"), "operation_event", ["operation_id"])


def downgrade() -> None:
    for table in ("operation_event", "operation_node"):
        op.drop_index(op.f(f"ix_{table}_operation_id"), table_name=table)
        op.drop_table(table)
    op.drop_index(op.f("ix_operation_status"), table_name="operation")
    op.drop_table("operation")
    op.drop_index(op.f("ix_node_transition_node_id"), table_name="node_transition")
    op.drop_table("node_transition")
    with op.batch_alter_table("node") as batch:
        for name in ("state", "configuration", "state_since", "state_message"):
            batch.drop_column(name)
