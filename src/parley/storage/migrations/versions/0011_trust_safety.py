"""trust & safety: moderation rules, sanctions and queue; disputes, their history, evidence,
and the webhook outbox

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
Timestamp = sa.DateTime(timezone=True)
OPEN_REPORT = sa.text("kind = 'report' AND status = 'open'")
HELD = sa.text("kind = 'held'")


def upgrade() -> None:
    op.create_table(
        "moderation_rules",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("scope_value", sa.String(length=64), nullable=False),
        sa.Column("config", Json, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderation_rules")),
        sa.UniqueConstraint("name", name=op.f("uq_moderation_rules_name")),
    )
    revision_table = op.create_table(
        "moderation_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderation_revision")),
    )
    op.bulk_insert(revision_table, [{"id": 1, "revision": 1}])
    op.create_table(
        "moderation_sanctions",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("conversation_id", Id, nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=True),
        sa.Column("lifted_at", Timestamp, nullable=True),
        sa.Column("lifted_by", sa.String(length=100), nullable=True),
        sa.Column("item_id", Id, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_moderation_sanctions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_moderation_sanctions_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderation_sanctions")),
    )
    op.create_index("ix_moderation_sanctions_user_id", "moderation_sanctions", ["user_id"])
    op.create_table(
        "moderation_items",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("conversation_id", Id, nullable=False),
        sa.Column("message_id", Id, nullable=True),
        sa.Column("sender_id", Id, nullable=False),
        sa.Column("client_msg_id", sa.String(length=128), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attachments", Json, nullable=False),
        sa.Column("metadata", Json, nullable=False),
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reports", sa.Integer(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("resolved_at", Timestamp, nullable=True),
        sa.Column("resolved_by", sa.String(length=100), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_moderation_items_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"],
            ["users.id"],
            name=op.f("fk_moderation_items_sender_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderation_items")),
    )
    op.create_index(
        "ix_moderation_items_status_tier", "moderation_items", ["status", "tier", "created_at"]
    )
    op.create_index(
        "uq_moderation_items_open_report",
        "moderation_items",
        ["message_id"],
        unique=True,
        sqlite_where=OPEN_REPORT,
        postgresql_where=OPEN_REPORT,
    )
    op.create_index(
        "uq_moderation_items_held",
        "moderation_items",
        ["conversation_id", "sender_id", "client_msg_id"],
        unique=True,
        sqlite_where=HELD,
        postgresql_where=HELD,
    )
    op.create_table(
        "moderation_reports",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("item_id", Id, nullable=False),
        sa.Column("reporter_id", Id, nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["moderation_items.id"],
            name=op.f("fk_moderation_reports_item_id_moderation_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reporter_id"],
            ["users.id"],
            name=op.f("fk_moderation_reports_reporter_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderation_reports")),
        sa.UniqueConstraint("item_id", "reporter_id", name="uq_moderation_reports_item_reporter"),
    )

    op.create_table(
        "disputes",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("conversation_id", Id, nullable=False),
        sa.Column("buyer_id", Id, nullable=False),
        sa.Column("seller_id", Id, nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opened_by", sa.String(length=100), nullable=False),
        sa.Column("assignee_id", Id, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("status_since", Timestamp, nullable=False),
        sa.Column("deadline_at", Timestamp, nullable=True),
        sa.Column("sla_breached_at", Timestamp, nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("seller_amount", sa.BigInteger(), nullable=True),
        sa.Column("buyer_amount", sa.BigInteger(), nullable=True),
        sa.Column("resolved_at", Timestamp, nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_disputes_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["buyer_id"], ["users.id"], name=op.f("fk_disputes_buyer_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["seller_id"], ["users.id"], name=op.f("fk_disputes_seller_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["assignee_id"],
            ["users.id"],
            name=op.f("fk_disputes_assignee_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disputes")),
    )
    op.create_index("ix_disputes_status_deadline", "disputes", ["status", "deadline_at"])
    op.create_index("ix_disputes_conversation_id", "disputes", ["conversation_id"])
    op.create_table(
        "dispute_events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("dispute_id", Id, nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", Json, nullable=False),
        sa.ForeignKeyConstraint(
            ["dispute_id"],
            ["disputes.id"],
            name=op.f("fk_dispute_events_dispute_id_disputes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispute_events")),
    )
    op.create_index("ix_dispute_events_dispute_id", "dispute_events", ["dispute_id"])
    op.create_table(
        "dispute_evidence",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("dispute_id", Id, nullable=False),
        sa.Column("message_id", Id, nullable=True),
        sa.Column("attachment_id", sa.String(length=40), nullable=True),
        sa.Column("sender_id", Id, nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attachments", Json, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("pinned_by", sa.String(length=100), nullable=False),
        sa.Column("pinned_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["dispute_id"],
            ["disputes.id"],
            name=op.f("fk_dispute_evidence_dispute_id_disputes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispute_evidence")),
        sa.UniqueConstraint("dispute_id", "message_id", name="uq_dispute_evidence_message"),
        sa.UniqueConstraint("dispute_id", "attachment_id", name="uq_dispute_evidence_attachment"),
    )
    op.create_table(
        "dispute_webhooks",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("dispute_id", Id, nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", Timestamp, nullable=False),
        sa.Column("claimed_until", Timestamp, nullable=True),
        sa.Column("delivered_at", Timestamp, nullable=True),
        sa.Column("failed_at", Timestamp, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dispute_id"],
            ["disputes.id"],
            name=op.f("fk_dispute_webhooks_dispute_id_disputes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispute_webhooks")),
    )
    op.create_index(
        "ix_dispute_webhooks_due",
        "dispute_webhooks",
        ["delivered_at", "failed_at", "next_attempt_at"],
    )


def downgrade() -> None:
    for table in (
        "dispute_webhooks",
        "dispute_evidence",
        "dispute_events",
        "disputes",
        "moderation_reports",
        "moderation_items",
        "moderation_sanctions",
        "moderation_revision",
        "moderation_rules",
    ):
        op.drop_table(table)
