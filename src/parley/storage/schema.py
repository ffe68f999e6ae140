"""The tables. Alembic migrations in `migrations/` create them; this module describes them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
Id = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")
Timestamp = DateTime(timezone=True)

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False),
    Column("password_hash", String(255), nullable=True),
    Column("role", String(16), nullable=False),
    Column("internal", Boolean, nullable=False, default=False),
    Column("created_at", Timestamp, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # sha256 of the opaque token; the token itself is shown once and never stored.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("label", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=True),
    Column("revoked_at", Timestamp, nullable=True),
    Index("ix_api_tokens_user_id", "user_id"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("title", String(200), nullable=False),
    Column("created_by", Id, ForeignKey("users.id"), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    # The highest seq handed out; bumped in the transaction that stores the messages.
    Column("last_seq", BigInteger, nullable=False, default=0),
    # "lo:hi" user ids of a direct conversation, so a pair has exactly one.
    Column("direct_key", String(64), nullable=True, unique=True),
    # Stream position when membership last changed (resume re-sends `conversation.updated`).
    Column("updated_pos", BigInteger, nullable=False, default=0),
)

members = Table(
    "members",
    metadata,
    Column(
        "conversation_id",
        Id,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("delivered_seq", BigInteger, nullable=False, default=0),
    Column("read_seq", BigInteger, nullable=False, default=0),
    Column("joined_at", Timestamp, nullable=False),
    # Stream position when the cursors last moved (resume re-sends the receipt).
    Column("updated_pos", BigInteger, nullable=False, default=0),
    Index("ix_members_user_id", "user_id"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "conversation_id",
        Id,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("seq", BigInteger, nullable=False),
    # Deployment-wide stream position: gapless, in commit order across nodes (see stream_head).
    Column("pos", BigInteger, nullable=False, unique=True),
    Column("sender_id", Id, ForeignKey("users.id"), nullable=False),
    Column("client_msg_id", String(128), nullable=False),
    Column("body", Text, nullable=False),
    Column("attachments", Json, nullable=False),
    Column("metadata", Json, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
    UniqueConstraint(
        "conversation_id", "sender_id", "client_msg_id", name="uq_messages_client_msg_id"
    ),
)

attachments = Table(
    "attachments",
    metadata,
    # Server-made random id; also the file's key in the blob store. Never the client's name.
    Column("id", String(40), primary_key=True),
    Column(
        "conversation_id",
        Id,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("uploader_id", Id, ForeignKey("users.id"), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("content_type", String(127), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_attachments_conversation_id", "conversation_id"),
)

# One row: the last stream position handed out. Message batches lock it first, so positions
# follow commit order on every node and a hub can deliver them without gaps.
stream_head = Table(
    "stream_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pos", BigInteger, nullable=False),
)

# Deployment-wide switches changed at run time (e.g. the transport mode), shared by all nodes.
runtime_settings = Table(
    "runtime_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Json, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("updated_by", Id, ForeignKey("users.id"), nullable=True),
)
