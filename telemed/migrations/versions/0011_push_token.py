"""push subscriptions remember the session (auth token) that registered them, so that
logging out of that session stops the device's pushes

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("push_subscriptions") as batch_op:
        batch_op.add_column(sa.Column("token_id", sa.String(length=32), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_push_subscriptions_token_id"), ["token_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("push_subscriptions") as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_subscriptions_token_id"))
        batch_op.drop_column("token_id")
