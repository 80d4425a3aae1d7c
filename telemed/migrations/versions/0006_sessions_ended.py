"""sessions ended: when the end of a token (logout, expiry, a disabled account) was told to
the live sessions using it, so each end is announced once, also across restarts

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auth_tokens") as batch:
        batch.add_column(sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
    # Tokens that ended before this revision have nobody left to tell.
    op.execute(
        "UPDATE auth_tokens SET ended_at = COALESCE(revoked_at, expires_at) "
        "WHERE revoked_at IS NOT NULL OR expires_at <= CURRENT_TIMESTAMP"
    )
    op.create_index("ix_auth_tokens_live_expiry", "auth_tokens", ["ended_at", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_auth_tokens_live_expiry", table_name="auth_tokens")
    with op.batch_alter_table("auth_tokens") as batch:
        batch.drop_column("ended_at")
