"""live chat: branches, routing, livechat conversations, internal notes, verified identities

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "branches",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("operators", Json, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_branches")),
        sa.UniqueConstraint("name", name=op.f("uq_branches_name")),
    )
    with op.batch_alter_table("inboxes") as batch:
        batch.add_column(sa.Column("routing_rules", Json, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("branch_id", Id, nullable=True))
        batch.add_column(
            sa.Column("allow_attachments", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(
            sa.Column("auto_assign", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_foreign_key(
            op.f("fk_inboxes_branch_id_branches"),
            "branches",
            ["branch_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("widget_sessions") as batch:
        batch.add_column(sa.Column("external_id", sa.String(length=200), nullable=True))
    op.create_table(
        "livechat_conversations",
        sa.Column("conversation_id", Id, nullable=False),
        sa.Column("inbox_id", Id, nullable=False),
        sa.Column("visitor_id", Id, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("assignee_id", Id, nullable=True),
        sa.Column("branch_id", Id, nullable=True),
        sa.Column("page_url", sa.String(length=2000), nullable=True),
        sa.Column("language", sa.String(length=35), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("attributes", Json, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("last_message_at", Timestamp, nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_livechat_conversations_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["inbox_id"],
            ["inboxes.id"],
            name=op.f("fk_livechat_conversations_inbox_id_inboxes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["visitor_id"],
            ["users.id"],
            name=op.f("fk_livechat_conversations_visitor_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["assignee_id"],
            ["users.id"],
            name=op.f("fk_livechat_conversations_assignee_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["branch_id"],
            ["branches.id"],
            name=op.f("fk_livechat_conversations_branch_id_branches"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("conversation_id", name=op.f("pk_livechat_conversations")),
        sa.UniqueConstraint(
            "inbox_id", "visitor_id", name="uq_livechat_conversations_inbox_visitor"
        ),
    )
    op.create_index(
        "ix_livechat_conversations_inbox_id_status",
        "livechat_conversations",
        ["inbox_id", "status"],
    )
    op.create_index(
        "ix_livechat_conversations_assignee_id", "livechat_conversations", ["assignee_id"]
    )
    op.create_table(
        "livechat_notes",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("conversation_id", Id, nullable=False),
        sa.Column("author_id", Id, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["livechat_conversations.conversation_id"],
            name=op.f("fk_livechat_notes_conversation_id_livechat_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["users.id"],
            name=op.f("fk_livechat_notes_author_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_livechat_notes")),
    )
    op.create_index("ix_livechat_notes_conversation_id", "livechat_notes", ["conversation_id"])
    op.create_table(
        "widget_identities",
        sa.Column("inbox_id", Id, nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("visitor_id", Id, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["inbox_id"],
            ["inboxes.id"],
            name=op.f("fk_widget_identities_inbox_id_inboxes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["visitor_id"],
            ["users.id"],
            name=op.f("fk_widget_identities_visitor_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("inbox_id", "external_id", name=op.f("pk_widget_identities")),
    )
    op.create_table(
        "widget_identity_nonces",
        sa.Column("inbox_id", Id, nullable=False),
        sa.Column("nonce", sa.String(length=100), nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["inbox_id"],
            ["inboxes.id"],
            name=op.f("fk_widget_identity_nonces_inbox_id_inboxes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("inbox_id", "nonce", name=op.f("pk_widget_identity_nonces")),
    )


def downgrade() -> None:
    op.drop_table("widget_identity_nonces")
    op.drop_table("widget_identities")
    op.drop_index("ix_livechat_notes_conversation_id", table_name="livechat_notes")
    op.drop_table("livechat_notes")
    op.drop_index("ix_livechat_conversations_assignee_id", table_name="livechat_conversations")
    op.drop_index("ix_livechat_conversations_inbox_id_status", table_name="livechat_conversations")
    op.drop_table("livechat_conversations")
    with op.batch_alter_table("widget_sessions") as batch:
        batch.drop_column("external_id")
    with op.batch_alter_table("inboxes") as batch:
        batch.drop_constraint(op.f("fk_inboxes_branch_id_branches"), type_="foreignkey")
        batch.drop_column("auto_assign")
        batch.drop_column("allow_attachments")
        batch.drop_column("branch_id")
        batch.drop_column("routing_rules")
    op.drop_table("branches")
