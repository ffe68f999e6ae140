"""rich timeline: edits, tombstones, replies, threads, reactions, mentions, search

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
Timestamp = sa.DateTime(timezone=True)

# Full-text search (docs/timeline.md): FTS5 on SQLite, an expression GIN index on PostgreSQL.
# Both use a language-neutral tokenizer (words of letters and digits, case-folded, no stemming):
# conversations are in many languages, and the two databases then match the same words.
_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE messages_fts USING fts5("
    "body, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body); "
    "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END",
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
]
_POSTGRES_FTS = (
    "CREATE INDEX ix_messages_body_search ON messages "
    "USING gin (to_tsvector('simple'::regconfig, body))"
)


def upgrade() -> None:
    # Plain ADD COLUMNs (no constraints): SQLite adds them in place, PostgreSQL without a rewrite.
    op.add_column("messages", sa.Column("reply_to_id", Id, nullable=True))
    op.add_column("messages", sa.Column("thread_root_id", Id, nullable=True))
    op.add_column(
        "messages", sa.Column("reply_count", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("messages", sa.Column("last_reply_seq", sa.BigInteger(), nullable=True))
    op.add_column("messages", sa.Column("mentions", Json, nullable=False, server_default="[]"))
    op.add_column(
        "messages",
        sa.Column("mentions_here", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("messages", sa.Column("reactions", Json, nullable=False, server_default="[]"))
    op.add_column("messages", sa.Column("edited_at", Timestamp, nullable=True))
    op.add_column("messages", sa.Column("deleted_at", Timestamp, nullable=True))
    op.add_column("messages", sa.Column("deleted_by", sa.String(length=16), nullable=True))
    op.add_column("messages", sa.Column("deleted_by_id", Id, nullable=True))
    op.add_column("messages", sa.Column("delete_reason", sa.Text(), nullable=True))
    op.create_index("ix_messages_thread_root_id_seq", "messages", ["thread_root_id", "seq"])
    op.create_index(
        "ix_messages_thread_roots",
        "messages",
        ["conversation_id", "last_reply_seq"],
        sqlite_where=sa.text("last_reply_seq IS NOT NULL"),
        postgresql_where=sa.text("last_reply_seq IS NOT NULL"),
    )

    op.create_table(
        "message_changes",
        sa.Column("pos", Id, autoincrement=False, nullable=False),
        sa.Column("conversation_id", Id, nullable=False),
        sa.Column("message_id", Id, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", Id, nullable=True),
        sa.Column("client_op_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_message_changes_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_changes_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_message_changes_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("pos", name=op.f("pk_message_changes")),
        sa.UniqueConstraint(
            "message_id", "actor_id", "client_op_id", name="uq_message_changes_client_op_id"
        ),
    )
    op.create_table(
        "message_edits",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("message_id", Id, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("written_at", Timestamp, nullable=False),
        sa.Column("editor_id", Id, nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_edits_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["editor_id"],
            ["users.id"],
            name=op.f("fk_message_edits_editor_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_edits")),
        sa.UniqueConstraint("message_id", "version", name="uq_message_edits_message_version"),
    )
    op.create_table(
        "message_reactions",
        sa.Column("message_id", Id, nullable=False),
        sa.Column("emoji", sa.String(length=64), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_reactions_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_message_reactions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "message_id", "emoji", "user_id", name=op.f("pk_message_reactions")
        ),
    )
    op.create_table(
        "message_mentions",
        sa.Column("message_id", Id, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("conversation_id", Id, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("thread_root_id", Id, nullable=True),
        sa.Column("via_here", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_mentions_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_message_mentions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", "user_id", name=op.f("pk_message_mentions")),
    )
    op.create_index(
        "ix_message_mentions_user_conversation_seq",
        "message_mentions",
        ["user_id", "conversation_id", "seq"],
    )
    op.create_table(
        "thread_reads",
        sa.Column("root_id", Id, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("conversation_id", Id, nullable=False),
        sa.Column("read_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["root_id"],
            ["messages.id"],
            name=op.f("fk_thread_reads_root_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_thread_reads_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_thread_reads_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("root_id", "user_id", name=op.f("pk_thread_reads")),
    )
    op.create_index(
        "ix_thread_reads_user_conversation", "thread_reads", ["user_id", "conversation_id"]
    )

    if op.get_bind().dialect.name == "sqlite":
        for statement in _SQLITE_FTS:
            op.execute(statement)
    else:
        op.execute(_POSTGRES_FTS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS messages_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS messages_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_messages_body_search")
    op.drop_index("ix_thread_reads_user_conversation", table_name="thread_reads")
    op.drop_table("thread_reads")
    op.drop_index("ix_message_mentions_user_conversation_seq", table_name="message_mentions")
    op.drop_table("message_mentions")
    op.drop_table("message_reactions")
    op.drop_table("message_edits")
    op.drop_table("message_changes")
    op.drop_index("ix_messages_thread_roots", table_name="messages")
    op.drop_index("ix_messages_thread_root_id_seq", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        for column in (
            "delete_reason",
            "deleted_by_id",
            "deleted_by",
            "deleted_at",
            "edited_at",
            "reactions",
            "mentions_here",
            "mentions",
            "last_reply_seq",
            "reply_count",
            "thread_root_id",
            "reply_to_id",
        ):
            batch.drop_column(column)
