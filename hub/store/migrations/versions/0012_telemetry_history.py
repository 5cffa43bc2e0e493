"""GPU telemetry history (`hubctl usage`): raw samples (`gpu_sample`) for a short window and
one row per GPU and hour (`gpu_usage`), keyed by time (epoch seconds), node and GPU; on SQLite
WITHOUT ROWID (the key is the table, no index: writes append, pruning deletes the start);
hours hold sums, counts and maxima, added to slice by slice up to `gpu_usage_mark`.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(time: str) -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column(time, sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("node", sa.String(length=253), nullable=False),
        sa.Column("gpu", sa.Integer(), autoincrement=False, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "gpu_sample",
        *_key("at_s"),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("utilization", sa.Integer(), nullable=True),
        sa.Column("memory_used_mb", sa.Integer(), nullable=False),
        sa.Column("temperature_c", sa.Float(), nullable=True),
        sa.Column("power_draw_w", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("at_s", "node", "gpu"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "gpu_usage",
        *_key("hour_s"),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("utilization_sum", sa.BigInteger(), nullable=False),
        sa.Column("utilization_n", sa.Integer(), nullable=False),
        sa.Column("utilization_max", sa.Integer(), nullable=True),
        sa.Column("memory_used_sum_mb", sa.BigInteger(), nullable=False),
        sa.Column("memory_used_max_mb", sa.Integer(), nullable=False),
        sa.Column("temperature_max_c", sa.Float(), nullable=True),
        sa.Column("power_sum_w", sa.Float(), nullable=False),
        sa.Column("power_n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour_s", "node", "gpu"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "gpu_usage_mark",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("folded_to_s", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("gpu_usage_mark")
    op.drop_table("gpu_usage")
    op.drop_table("gpu_sample")
