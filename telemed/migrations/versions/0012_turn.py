"""call_quality: each side's call quality summary per consultation leg (issue 17)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_quality",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("leg_id", sa.String(length=32), nullable=False),
        sa.Column("reporter_id", sa.String(length=32), nullable=False),
        sa.Column("reporter_role", sa.String(length=16), nullable=False),
        sa.Column("path", sa.String(length=8), nullable=False),
        sa.Column("median_rtt_ms", sa.Float(), nullable=True),
        sa.Column("loss_percent", sa.Float(), nullable=False),
        sa.Column("bitrate_kbps", sa.Float(), nullable=False),
        sa.Column("freezes", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_call_quality_consultation_id_consultations"),
        ),
        sa.ForeignKeyConstraint(
            ["leg_id"], ["consultation_legs.id"], name=op.f("fk_call_quality_leg_id_consultation_legs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_quality")),
        sa.UniqueConstraint("leg_id", "reporter_id", name=op.f("uq_call_quality_leg_id")),
    )
    with op.batch_alter_table("call_quality") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_call_quality_consultation_id"), ["consultation_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("call_quality") as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_quality_consultation_id"))
    op.drop_table("call_quality")
