"""website live-chat: inboxes and widget visitor sessions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "inboxes",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("widget_token", sa.String(length=64), nullable=False),
        sa.Column("allowed_domains", Json, nullable=False),
        sa.Column("operators", Json, nullable=False),
        sa.Column("privacy_url", sa.String(length=2000), nullable=True),
        sa.Column("privacy_text", sa.Text(), nullable=True),
        sa.Column("working_hours", Json, nullable=True),
        sa.Column("offline_message", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("identity_secret", sa.String(length=128), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inboxes")),
        sa.UniqueConstraint("widget_token", name=op.f("uq_inboxes_widget_token")),
    )
    op.create_table(
        "widget_sessions",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("inbox_id", Id, nullable=False),
        sa.Column("visitor_id", Id, nullable=False),
        sa.Column("conversation_id", Id, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_seen_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["inbox_id"],
            ["inboxes.id"],
            name=op.f("fk_widget_sessions_inbox_id_inboxes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["visitor_id"],
            ["users.id"],
            name=op.f("fk_widget_sessions_visitor_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_widget_sessions_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_widget_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_widget_sessions_token_hash")),
    )
    op.create_index("ix_widget_sessions_inbox_id", "widget_sessions", ["inbox_id"])


def downgrade() -> None:
    op.drop_index("ix_widget_sessions_inbox_id", table_name="widget_sessions")
    op.drop_table("widget_sessions")
    op.drop_table("inboxes")
