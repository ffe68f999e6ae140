"""security hardening: visitor and disabled users, who sent a client report, revoked-token index

Revision ID: 0009
Revises: 0011
Create Date: 2026-12-02

- `users.visitor`: website visitors (widget) are users that belong to their inbox's
  conversations only; existing visitors are found through the live-chat tables, and any
  membership they hold outside their own live-chat conversations is removed.
- `users.disabled`: a disabled user cannot sign in and none of their tokens is accepted.
- `release_client_reports.token_id` / `client_ip`: who sent each report (the account is
  `user_id`), so a P0 report can be traced.
- `ix_api_tokens_revoked_at`: every node reads the tokens revoked since its last look, to close
  the streams opened with them even when the bus lost the revocation.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("visitor", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(
        "UPDATE users SET visitor = true WHERE id IN ("
        "SELECT visitor_id FROM livechat_conversations "
        "UNION SELECT visitor_id FROM widget_sessions "
        "UNION SELECT visitor_id FROM widget_identities)"
    )
    # A visitor reached from outside their own live-chat conversation (the hole this closes).
    op.execute(
        "DELETE FROM members WHERE user_id IN (SELECT id FROM users WHERE visitor = true) "
        "AND conversation_id NOT IN (SELECT conversation_id FROM livechat_conversations "
        "WHERE livechat_conversations.visitor_id = members.user_id)"
    )
    with op.batch_alter_table("release_client_reports") as batch:
        batch.add_column(sa.Column("token_id", Id, nullable=True))
        batch.add_column(sa.Column("client_ip", sa.String(length=45), nullable=True))
    op.create_index("ix_api_tokens_revoked_at", "api_tokens", ["revoked_at"])


def downgrade() -> None:
    op.drop_index("ix_api_tokens_revoked_at", table_name="api_tokens")
    with op.batch_alter_table("release_client_reports") as batch:
        batch.drop_column("client_ip")
        batch.drop_column("token_id")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled")
        batch.drop_column("visitor")
