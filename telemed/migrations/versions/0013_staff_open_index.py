"""consultations: indexes for a staff member's open consultations (issue 13)

A consultant's or doctor's connect reads their open consultations; without these the
query walked every consultation in that state (every connect of a busy service).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_consultations_consultant_state", "consultations", ["consultant_id", "state"]
    )
    op.create_index("ix_consultations_doctor_state", "consultations", ["doctor_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_consultations_doctor_state", table_name="consultations")
    op.drop_index("ix_consultations_consultant_state", table_name="consultations")
