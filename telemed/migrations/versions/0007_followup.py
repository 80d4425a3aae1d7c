"""appointments remember when the patient was informed (R-SCH-1); the
consultant's follow-up after the doctor (R-URG-5)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("appointments") as batch_op:
        batch_op.add_column(sa.Column("informed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("informed_by", sa.String(length=32), nullable=True))
    op.create_table(
        "consultation_followups",
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("needs", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(length=32), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_consultation_followups_consultation_id_consultations"),
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by"], ["staff.id"], name=op.f("fk_consultation_followups_recorded_by_staff")
        ),
        sa.PrimaryKeyConstraint("consultation_id", name=op.f("pk_consultation_followups")),
    )


def downgrade() -> None:
    op.drop_table("consultation_followups")
    with op.batch_alter_table("appointments") as batch_op:
        batch_op.drop_column("informed_by")
        batch_op.drop_column("informed_at")
