"""calls (state, device and pair claims) and single sign-on (identities, user e-mail)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A plain ADD COLUMN and a separate unique index: no table rebuild of `users` on SQLite
    # (a rebuild would drop the table other tables cascade from).
    op.add_column("users", sa.Column("email", sa.String(length=320), nullable=True))
    op.create_index("uq_users_email", "users", ["email"], unique=True)
    op.create_table(
        "calls",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", Id, nullable=False),
        sa.Column("caller_id", Id, nullable=False),
        sa.Column("caller_device", sa.String(length=64), nullable=False),
        sa.Column("callee_id", Id, nullable=False),
        sa.Column("callee_device", sa.String(length=64), nullable=True),
        sa.Column("media", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("end_reason", sa.String(length=16), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("ring_deadline", Timestamp, nullable=False),
        sa.Column("answered_at", Timestamp, nullable=True),
        sa.Column("ended_at", Timestamp, nullable=True),
        sa.Column("offer_sdp", sa.Text(), nullable=False),
        sa.Column("answer_sdp", sa.Text(), nullable=True),
        sa.Column("caller_candidates", Json, nullable=False),
        sa.Column("callee_candidates", Json, nullable=False),
        sa.Column("recorded_at", Timestamp, nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_calls_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["caller_id"], ["users.id"], name=op.f("fk_calls_caller_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["callee_id"], ["users.id"], name=op.f("fk_calls_callee_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
    )
    op.create_index("ix_calls_state_ring_deadline", "calls", ["state", "ring_deadline"])
    op.create_index("ix_calls_conversation_id", "calls", ["conversation_id"])
    op.create_index("ix_calls_caller_id", "calls", ["caller_id"])
    op.create_index("ix_calls_callee_id", "calls", ["callee_id"])
    op.create_table(
        "call_claims",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_claims_call_id_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_call_claims")),
    )
    op.create_index("ix_call_claims_call_id", "call_claims", ["call_id"])
    op.create_table(
        "user_identities",
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_login_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_identities_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("provider", "subject", name=op.f("pk_user_identities")),
    )
    op.create_index("ix_user_identities_user_id", "user_identities", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_user_identities_user_id", table_name="user_identities")
    op.drop_table("user_identities")
    op.drop_index("ix_call_claims_call_id", table_name="call_claims")
    op.drop_table("call_claims")
    for name in (
        "ix_calls_callee_id",
        "ix_calls_caller_id",
        "ix_calls_conversation_id",
        "ix_calls_state_ring_deadline",
    ):
        op.drop_index(name, table_name="calls")
    op.drop_table("calls")
    op.drop_index("uq_users_email", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email")
