"""release control plane: flags, rollout state, decision log, per-cohort metric samples

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
Timestamp = sa.DateTime(timezone=True)

# Seed 000's flags, shipped off: an operator turns each on when its step of the rollout comes.
BUILT_IN_FLAGS = [
    {
        "key": "chat_dark_launch",
        "description": "Chat for internal users only (dark launch): watch dashboards for 24 h.",
        "internal_only": True,
        "percentage": None,
        "stickiness": "user",
        "roles": [],
    },
    {
        "key": "chat_notifications_beta",
        "description": "E-mail and web push for 5 % of contracts; watch the drop rate (< 1 %).",
        "internal_only": False,
        "percentage": 5,
        "stickiness": "contract",
        "roles": [],
    },
    {
        "key": "dispute_tools_v2",
        "description": "Arbitration tools for the dispute_ops team.",
        "internal_only": False,
        "percentage": None,
        "stickiness": "user",
        "roles": ["dispute_ops"],
    },
    {
        "key": "chat_full_release",
        "description": "The chat release itself; its percentage follows the rollout stage.",
        "internal_only": False,
        "percentage": 0,
        "stickiness": "user",
        "roles": [],
    },
    {
        "key": "transport_sse_only",
        "description": "Rollback path: WebSocket off, clients use SSE (PUT /v1/admin/transport).",
        "internal_only": False,
        "percentage": None,
        "stickiness": "user",
        "roles": [],
    },
]


def upgrade() -> None:
    flags = op.create_table(
        "flags",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("internal_only", sa.Boolean(), nullable=False),
        sa.Column("percentage", sa.Integer(), nullable=True),
        sa.Column("stickiness", sa.String(length=16), nullable=False),
        sa.Column("bucket_group", sa.String(length=64), nullable=False),
        sa.Column("allow_users", Json, nullable=False),
        sa.Column("allow_keys", Json, nullable=False),
        sa.Column("roles", Json, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_flags")),
    )
    flag_revision = op.create_table(
        "flag_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("published", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flag_revision")),
    )
    release_state = op.create_table(
        "release_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("killed", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("changed_at", Timestamp, nullable=False),
        sa.Column("stage_since", Timestamp, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_state")),
    )
    op.create_table(
        "release_history",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("from_stage", sa.String(length=16), nullable=False),
        sa.Column("to_stage", sa.String(length=16), nullable=False),
        sa.Column("killed", sa.Boolean(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("override", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("gates", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_history")),
    )
    op.create_table(
        "release_client_reports",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("cohort", sa.String(length=16), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("ack_without_receipt_10s", sa.Integer(), nullable=False),
        sa.Column("timeline_duplicate_detected", sa.Integer(), nullable=False),
        sa.Column("read_rollback_detected", sa.Integer(), nullable=False),
        sa.Column("forced_resyncs", sa.Integer(), nullable=False),
        sa.Column("full_state_loads", sa.Integer(), nullable=False),
        sa.Column("write_receipt_ms", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_client_reports")),
    )
    op.create_index("ix_release_client_reports_at", "release_client_reports", ["at"])
    op.create_table(
        "release_server_samples",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("node", sa.String(length=32), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors_5xx", sa.BigInteger(), nullable=False),
        sa.Column("stream_opens", sa.BigInteger(), nullable=False),
        sa.Column("resync_range_unavailable", sa.BigInteger(), nullable=False),
        sa.Column("resync_throttled", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_server_samples")),
    )
    op.create_index("ix_release_server_samples_at", "release_server_samples", ["at"])

    now = datetime.now(UTC)
    op.bulk_insert(
        flags,
        [
            {
                **flag,
                "enabled": False,
                "bucket_group": flag["key"],
                "allow_users": [],
                "allow_keys": [],
                "updated_at": now,
                "updated_by": "migration",
            }
            for flag in BUILT_IN_FLAGS
        ],
    )
    op.bulk_insert(flag_revision, [{"id": 1, "revision": 1, "published": 1}])
    op.bulk_insert(
        release_state,
        [
            {
                "id": 1,
                "release": "chat_full_release",
                "stage": "off",
                "killed": False,
                "reason": "not started",
                "actor": "migration",
                "changed_at": now,
                "stage_since": now,
                "version": 1,
            }
        ],
    )


def downgrade() -> None:
    op.drop_index("ix_release_server_samples_at", table_name="release_server_samples")
    op.drop_table("release_server_samples")
    op.drop_index("ix_release_client_reports_at", table_name="release_client_reports")
    op.drop_table("release_client_reports")
    op.drop_table("release_history")
    op.drop_table("release_state")
    op.drop_table("flag_revision")
    op.drop_table("flags")
