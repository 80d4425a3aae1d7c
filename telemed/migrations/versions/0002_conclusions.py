"""conclusions: second opinions, their documents, calendar feeds; conclusions of second opinions

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_CHAT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "calendar_feeds",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_calendar_feeds_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_feeds")),
        sa.UniqueConstraint("patient_id", name=op.f("uq_calendar_feeds_patient_id")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_calendar_feeds_secret_hash")),
    )
    op.create_table(
        "second_opinions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consultant_id", sa.String(length=32), nullable=True),
        sa.Column("specialist_id", sa.String(length=32), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_by", sa.String(length=32), nullable=True),
        sa.Column("chat_message_id", _CHAT_ID, nullable=True),
        sa.Column("appointment_id", sa.String(length=32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointments.id"],
            name=op.f("fk_second_opinions_appointment_id_appointments"),
        ),
        sa.ForeignKeyConstraint(
            ["chat_message_id"],
            ["chat_messages.id"],
            name=op.f("fk_second_opinions_chat_message_id_chat_messages"),
        ),
        sa.ForeignKeyConstraint(
            ["consultant_id"], ["staff.id"], name=op.f("fk_second_opinions_consultant_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_second_opinions_consultation_id_consultations"),
        ),
        sa.ForeignKeyConstraint(
            ["delivered_by"], ["staff.id"], name=op.f("fk_second_opinions_delivered_by_staff")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_second_opinions_patient_id_patients")
        ),
        sa.ForeignKeyConstraint(
            ["specialist_id"], ["staff.id"], name=op.f("fk_second_opinions_specialist_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_second_opinions")),
    )
    with op.batch_alter_table("second_opinions") as batch:
        batch.create_index(batch.f("ix_second_opinions_due_on"), ["due_on"], unique=False)
        batch.create_index(batch.f("ix_second_opinions_patient_id"), ["patient_id"], unique=False)
        batch.create_index(
            batch.f("ix_second_opinions_specialist_id"), ["specialist_id"], unique=False
        )

    op.create_table(
        "second_opinion_documents",
        sa.Column("second_opinion_id", sa.String(length=32), nullable=False),
        sa.Column("document_id", sa.String(length=32), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_second_opinion_documents_document_id_documents"),
        ),
        sa.ForeignKeyConstraint(
            ["second_opinion_id"],
            ["second_opinions.id"],
            name=op.f("fk_second_opinion_documents_second_opinion_id_second_opinions"),
        ),
        sa.PrimaryKeyConstraint(
            "second_opinion_id", "document_id", name=op.f("pk_second_opinion_documents")
        ),
    )
    with op.batch_alter_table("conclusions") as batch:
        batch.add_column(sa.Column("second_opinion_id", sa.String(length=32), nullable=True))
        batch.alter_column("consultation_id", existing_type=sa.String(length=32), nullable=True)
        batch.create_unique_constraint(
            batch.f("uq_conclusions_second_opinion_id"), ["second_opinion_id", "version"]
        )
        batch.create_foreign_key(
            batch.f("fk_conclusions_second_opinion_id_second_opinions"),
            "second_opinions",
            ["second_opinion_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("conclusions") as batch:
        batch.drop_constraint(
            batch.f("fk_conclusions_second_opinion_id_second_opinions"), type_="foreignkey"
        )
        batch.drop_constraint(batch.f("uq_conclusions_second_opinion_id"), type_="unique")
        batch.alter_column("consultation_id", existing_type=sa.String(length=32), nullable=False)
        batch.drop_column("second_opinion_id")
    op.drop_table("second_opinion_documents")
    with op.batch_alter_table("second_opinions") as batch:
        batch.drop_index(batch.f("ix_second_opinions_specialist_id"))
        batch.drop_index(batch.f("ix_second_opinions_patient_id"))
        batch.drop_index(batch.f("ix_second_opinions_due_on"))
    op.drop_table("second_opinions")
    op.drop_table("calendar_feeds")
