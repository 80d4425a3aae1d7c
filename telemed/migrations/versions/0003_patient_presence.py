"""patient presence: when the patient's connection dropped

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("consultations") as batch:
        batch.add_column(sa.Column("patient_away_since", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(
            "ix_consultations_patient_away_since", ["patient_away_since"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("consultations") as batch:
        batch.drop_index("ix_consultations_patient_away_since")
        batch.drop_column("patient_away_since")
