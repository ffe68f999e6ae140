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
    false,
    text,
    true,
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
    # Lower-cased; single sign-on links a verified provider e-mail to the user who has it.
    Column("email", String(320), nullable=True),
    Index("uq_users_email", "email", unique=True),
    # A website visitor (widget): a member of their own live-chat conversations and nothing else.
    Column("visitor", Boolean, nullable=False, default=False, server_default=false()),
    # Cannot sign in; none of their tokens is accepted.
    Column("disabled", Boolean, nullable=False, default=False, server_default=false()),
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
    # Nodes read the tokens revoked since their last look (streams opened with them close).
    Index("ix_api_tokens_revoked_at", "revoked_at"),
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
    # -- the rich timeline (migration 0006; docs/timeline.md) --
    # A quoted message of the same conversation, and the root of the thread this reply is in.
    Column("reply_to_id", Id, nullable=True),
    Column("thread_root_id", Id, nullable=True),
    # On a thread's root: its replies that are not deleted, and the seq of the newest reply.
    Column("reply_count", Integer, nullable=False, server_default="0"),
    Column("last_reply_seq", BigInteger, nullable=True),
    # User ids named with @name (members only), and whether @here was used.
    Column("mentions", Json, nullable=False, server_default="[]"),
    Column("mentions_here", Boolean, nullable=False, server_default=false()),
    # [{"emoji", "count", "user_ids"}]: kept in step with message_reactions by every change.
    Column("reactions", Json, nullable=False, server_default="[]"),
    Column("edited_at", Timestamp, nullable=True),
    # A tombstone: body, attachments, metadata, mentions, reactions and edit history are gone;
    # the seq stays. `deleted_by` is "author" | "staff" | "system" (personal-data erasure).
    Column("deleted_at", Timestamp, nullable=True),
    Column("deleted_by", String(16), nullable=True),
    Column("deleted_by_id", Id, nullable=True),
    Column("delete_reason", Text, nullable=True),
    UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
    UniqueConstraint(
        "conversation_id", "sender_id", "client_msg_id", name="uq_messages_client_msg_id"
    ),
    Index("ix_messages_thread_root_id_seq", "thread_root_id", "seq"),
    # A conversation's threads, newest reply first (only roots are in it).
    Index(
        "ix_messages_thread_roots",
        "conversation_id",
        "last_reply_seq",
        sqlite_where=text("last_reply_seq IS NOT NULL"),
        postgresql_where=text("last_reply_seq IS NOT NULL"),
    ),
)
# Full-text search (migration 0006; storage/search.py), outside this description because each
# database has its own: on PostgreSQL a stored generated column
# `messages.search_vector tsvector = to_tsvector('simple', body)` with the GIN index
# `ix_messages_search_vector`; on SQLite the FTS5 table `messages_fts` over `messages.body`,
# kept by three triggers. Never select `*` from messages (the vector would come along).
SEARCH_INDEX_TABLE = "messages_fts"  # and its FTS5 shadow tables messages_fts_data, ...
SEARCH_VECTOR_COLUMN = "search_vector"


def is_search_index(table: str) -> bool:
    """A table that only indexes messages for search: derived data, rebuilt by the triggers."""
    return table == SEARCH_INDEX_TABLE or table.startswith(SEARCH_INDEX_TABLE + "_")


# Every edit, deletion and reaction change of a message: its own stream position (taken under
# the stream_head lock, like a message's), so resuming clients get it. The event is rebuilt
# from the message's current state, so a tombstone never re-sends what was deleted.
message_changes = Table(
    "message_changes",
    metadata,
    Column("pos", Id, primary_key=True, autoincrement=False),
    Column(
        "conversation_id",
        Id,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("message_id", Id, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),  # edited | deleted | reactions
    Column("actor_id", Id, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    # The client's id of an edit or delete: a retry with it changes nothing twice.
    Column("client_op_id", String(128), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint(
        "message_id", "actor_id", "client_op_id", name="uq_message_changes_client_op_id"
    ),
)

# Earlier versions of edited messages (version 1 is the original); gone with a tombstone.
message_edits = Table(
    "message_edits",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("message_id", Id, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("written_at", Timestamp, nullable=False),
    Column("editor_id", Id, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    UniqueConstraint("message_id", "version", name="uq_message_edits_message_version"),
)

# One row per (message, emoji, user): adding twice is one reaction.
message_reactions = Table(
    "message_reactions",
    metadata,
    Column("message_id", Id, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    Column("emoji", String(64), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("created_at", Timestamp, nullable=False),
)

# Who a message mentions (@name, and every other member for @here): what notifications and
# mention counts read. `seq` and `thread_root_id` copy the message's, for unread counting.
message_mentions = Table(
    "message_mentions",
    metadata,
    Column("message_id", Id, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("conversation_id", Id, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("thread_root_id", Id, nullable=True),
    Column("via_here", Boolean, nullable=False),
    Index("ix_message_mentions_user_conversation_seq", "user_id", "conversation_id", "seq"),
)

# A user's read cursor in a thread they follow (wrote the root, replied, were mentioned in it,
# or marked it read). Only moves forward, like a member's read_seq.
thread_reads = Table(
    "thread_reads",
    metadata,
    Column("root_id", Id, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "conversation_id",
        Id,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("read_seq", BigInteger, nullable=False),
    Index("ix_thread_reads_user_conversation", "user_id", "conversation_id"),
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

# -- release control plane (migration 0002_release; docs/release.md) ------------------------------

# Feature flags and their targeting rules (core/flags.py evaluates them). The value of
# `transport_sse_only` lives in runtime_settings["transport_mode"], the switch the stream reads.
flags = Table(
    "flags",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("description", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("internal_only", Boolean, nullable=False),
    Column("percentage", Integer, nullable=True),
    Column("stickiness", String(16), nullable=False),
    Column("bucket_group", String(64), nullable=False),
    Column("allow_users", Json, nullable=False),
    Column("allow_keys", Json, nullable=False),
    Column("roles", Json, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("updated_by", String(64), nullable=False),
)

# One row: bumped by every flag change; `published` is the revision clients were told about
# (`flags.updated`), so exactly one node announces a change made elsewhere (e.g. the CLI).
flag_revision = Table(
    "flag_revision",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("revision", BigInteger, nullable=False),
    Column("published", BigInteger, nullable=False),
)

# One row: the rollout state of the release (seed 004's chat_get_v11_rollout_state).
release_state = Table(
    "release_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("release", String(64), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("killed", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("changed_at", Timestamp, nullable=False),
    Column("stage_since", Timestamp, nullable=False),
    Column("version", BigInteger, nullable=False),
)

# The decision log: every transition with its gate snapshot and approving owner (seed 004 §9).
release_history = Table(
    "release_history",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Timestamp, nullable=False),
    Column("action", String(16), nullable=False),
    Column("from_stage", String(16), nullable=False),
    Column("to_stage", String(16), nullable=False),
    Column("killed", Boolean, nullable=False),
    Column("decision", String(16), nullable=False),
    Column("override", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("gates", Json, nullable=False),
)

# Client reports (POST /v1/stream/report) with the cohort their user was in: gates per cohort.
release_client_reports = Table(
    "release_client_reports",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Timestamp, nullable=False),
    Column("user_id", Id, nullable=False),
    Column("cohort", String(16), nullable=False),
    Column("transport", String(8), nullable=False),
    # The reported counters, one column each, so the P0 check is one cheap query.
    Column("ack_without_receipt_10s", Integer, nullable=False),
    Column("timeline_duplicate_detected", Integer, nullable=False),
    Column("read_rollback_detected", Integer, nullable=False),
    Column("forced_resyncs", Integer, nullable=False),
    Column("full_state_loads", Integer, nullable=False),
    Column("write_receipt_ms", Json, nullable=False),
    # Who sent it, beside `user_id`: the API token (device) and the client address.
    Column("token_id", Id, nullable=True),
    Column("client_ip", String(45), nullable=True),
    Index("ix_release_client_reports_at", "at"),
)

# Each node's request, 5xx, stream-open, resync-error, send and send-stall counts per watcher
# tick.
release_server_samples = Table(
    "release_server_samples",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Timestamp, nullable=False),
    Column("node", String(32), nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("errors_5xx", BigInteger, nullable=False),
    Column("stream_opens", BigInteger, nullable=False),
    Column("resync_range_unavailable", BigInteger, nullable=False),
    Column("resync_throttled", BigInteger, nullable=False),
    # Sends that reached the writer, and those that failed there or took longer than
    # PARLEY_RELEASE_SEND_STALL_MS (migration 0010).
    Column("sends", BigInteger, nullable=False, server_default="0"),
    Column("send_stalls", BigInteger, nullable=False, server_default="0"),
    Index("ix_release_server_samples_at", "at"),
)

# -- website live-chat (docs/widget.md) --------------------------------------------------------

inboxes = Table(
    "inboxes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    # Server-made and public (it sits in the embedding page); it names the inbox, nothing more.
    Column("widget_token", String(64), nullable=False, unique=True),
    Column("allowed_domains", Json, nullable=False),
    # User names added to every new visitor conversation (until routing exists).
    Column("operators", Json, nullable=False),
    Column("privacy_url", String(2000), nullable=True),
    Column("privacy_text", Text, nullable=True),
    # {"timezone": "Europe/Moscow", "days": [0..6], "start": "09:00", "end": "18:00"}; null: always.
    Column("working_hours", Json, nullable=True),
    Column("offline_message", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("identity_secret", String(128), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    # [{"url_contains"|"url_prefix"|"language"|"country": value, ..., "branch_id": N}], first wins.
    Column("routing_rules", Json, nullable=False, server_default="[]"),
    # This inbox's own fallback branch; else PARLEY_DEFAULT_BRANCH_ID.
    Column("branch_id", Id, ForeignKey("branches.id", ondelete="SET NULL"), nullable=True),
    Column("allow_attachments", Boolean, nullable=False, server_default=true()),
    # Assign a new conversation to the branch's available operator with the fewest open ones.
    Column("auto_assign", Boolean, nullable=False, server_default=false()),
    # Days this inbox's conversations keep their messages (null: PARLEY_RETENTION_DAYS["livechat"]).
    Column("retention_days", Integer, nullable=True),
    # The widget's welcome line and "we usually reply in …" line (migration 0015); null: none.
    Column("greeting", Text, nullable=True),
    Column("reply_time", String(200), nullable=True),
)

widget_sessions = Table(
    "widget_sessions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # sha256 of the visitor's session token; the token lives only in the visitor's browser.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("inbox_id", Id, ForeignKey("inboxes.id", ondelete="CASCADE"), nullable=False),
    Column("visitor_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column(
        "conversation_id", Id, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    ),
    Column("created_at", Timestamp, nullable=False),
    Column("last_seen_at", Timestamp, nullable=False),
    # The site's user id when the session was opened with a verified identity token; such a
    # session is restored only with a fresh valid token for the same user.
    Column("external_id", String(200), nullable=True),
    Index("ix_widget_sessions_inbox_id", "inbox_id"),
)

# A team of operators that routed conversations go to ("branch" in the seed checklists).
branches = Table(
    "branches",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("operators", Json, nullable=False),  # user names
    Column("created_at", Timestamp, nullable=False),
)

# The live-chat side of a visitor's conversation: one per (inbox, visitor), ever; a visitor who
# writes again into a resolved/closed one reopens it.
livechat_conversations = Table(
    "livechat_conversations",
    metadata,
    Column(
        "conversation_id",
        Id,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("inbox_id", Id, ForeignKey("inboxes.id", ondelete="CASCADE"), nullable=False),
    Column("visitor_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),  # open | pending | resolved | closed
    Column("priority", String(16), nullable=False),  # low | normal | high | urgent
    Column("assignee_id", Id, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("branch_id", Id, ForeignKey("branches.id", ondelete="SET NULL"), nullable=True),
    Column("page_url", String(2000), nullable=True),
    Column("language", String(35), nullable=True),
    Column("country", String(2), nullable=True),
    # What the site told about its visitor (name, email, plan...); always rendered as text.
    Column("attributes", Json, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("last_message_at", Timestamp, nullable=True),
    UniqueConstraint("inbox_id", "visitor_id", name="uq_livechat_conversations_inbox_visitor"),
    Index("ix_livechat_conversations_inbox_id_status", "inbox_id", "status"),
    Index("ix_livechat_conversations_assignee_id", "assignee_id"),
)

# Internal notes: staff only. Not messages, so no transport that carries messages can leak them.
livechat_notes = Table(
    "livechat_notes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "conversation_id",
        Id,
        ForeignKey("livechat_conversations.conversation_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("author_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_livechat_notes_conversation_id", "conversation_id"),
)

# Canned replies (migration 0015): an inbox's saved answers, picked with `/` in the console.
canned_replies = Table(
    "canned_replies",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("inbox_id", Id, ForeignKey("inboxes.id", ondelete="CASCADE"), nullable=False),
    Column("shortcut", String(40), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("inbox_id", "shortcut", name="uq_canned_replies_inbox_shortcut"),
)

# A verified site user (identity token) is one visitor user per inbox, whatever the device.
widget_identities = Table(
    "widget_identities",
    metadata,
    Column("inbox_id", Id, ForeignKey("inboxes.id", ondelete="CASCADE"), primary_key=True),
    Column("external_id", String(200), primary_key=True),
    Column("visitor_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

# Identity-token nonces seen, kept until the token expires: a second use is a replay (401).
widget_identity_nonces = Table(
    "widget_identity_nonces",
    metadata,
    Column("inbox_id", Id, ForeignKey("inboxes.id", ondelete="CASCADE"), primary_key=True),
    Column("nonce", String(100), primary_key=True),
    Column("expires_at", Timestamp, nullable=False),
)

# -- audit log (migration 0005_audit; docs/audit.md) ---------------------------------------------

# Append-only: triggers on both databases refuse UPDATE and DELETE of a row.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Timestamp, nullable=False),
    # A user's name when a signed-in user acted (`actor_id` set), `cli:<login>`, or `system`.
    Column("actor", String(100), nullable=False),
    Column("actor_id", Id, nullable=True),
    Column("source", String(16), nullable=False),  # api | cli | system
    Column("action", String(64), nullable=False),  # e.g. flag.update, livechat.assign
    Column("target_kind", String(32), nullable=False),
    Column("target_id", String(200), nullable=False),
    Column("before", Json, nullable=True),
    Column("after", Json, nullable=True),
    Column("reason", Text, nullable=False),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_target", "target_kind", "target_id"),
    Index("ix_audit_log_actor", "actor"),
    Index("ix_audit_log_action", "action"),
)

# -- moderation (migration 0011_trust_safety; docs/moderation.md) --------------------------------

# Filter rules (core/moderation.py): what they look for, their verdict and which sends they see.
moderation_rules = Table(
    "moderation_rules",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # words | regex | links | attachments | flood...
    Column("verdict", String(16), nullable=False),  # hold_for_review | reject
    Column("scope", String(20), nullable=False),  # all | conversation_kind | inbox
    Column("scope_value", String(64), nullable=False),
    Column("config", Json, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("updated_by", String(100), nullable=False),
)

# One row: bumped with every rule or sanction change, so each node reloads its cached copy.
moderation_revision = Table(
    "moderation_revision",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("revision", BigInteger, nullable=False),
)

# Warnings, mutes and bans; a conversation's (conversation_id set) or deployment-wide (null).
moderation_sanctions = Table(
    "moderation_sanctions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(8), nullable=False),  # warn | mute | ban
    Column(
        "conversation_id", Id, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=True
    ),
    Column("reason", Text, nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=True),  # null: until lifted
    Column("lifted_at", Timestamp, nullable=True),
    Column("lifted_by", String(100), nullable=True),
    Column("item_id", Id, nullable=True),  # the queue item it was decided on, if any
    Index("ix_moderation_sanctions_user_id", "user_id"),
)

# The moderation queue: reported messages and sends the filters held back (a held send's text
# lives only here until it is approved into the timeline).
moderation_items = Table(
    "moderation_items",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),  # report | held
    Column("status", String(8), nullable=False),  # open | resolved
    Column("tier", Integer, nullable=False),  # 1 moderators, 2 admins (escalated)
    Column(
        "conversation_id", Id, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    ),
    Column("message_id", Id, nullable=True),
    Column("sender_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("client_msg_id", String(128), nullable=False),
    Column("body", Text, nullable=False),
    Column("attachments", Json, nullable=False),
    Column("metadata", Json, nullable=False),
    Column("rule", String(100), nullable=False),
    Column("reason", Text, nullable=False),
    Column("reports", Integer, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("resolved_at", Timestamp, nullable=True),
    Column("resolved_by", String(100), nullable=True),
    Column("resolution", String(16), nullable=True),  # approved | removed
    Column("note", Text, nullable=False),
    Index("ix_moderation_items_status_tier", "status", "tier", "created_at"),
    # One open item per reported message; one held item per send (its idempotency key).
    Index(
        "uq_moderation_items_open_report",
        "message_id",
        unique=True,
        sqlite_where=text("kind = 'report' AND status = 'open'"),
        postgresql_where=text("kind = 'report' AND status = 'open'"),
    ),
    Index(
        "uq_moderation_items_held",
        "conversation_id",
        "sender_id",
        "client_msg_id",
        unique=True,
        sqlite_where=text("kind = 'held'"),
        postgresql_where=text("kind = 'held'"),
    ),
)

# Who reported an item, and why; one report per member per item.
moderation_reports = Table(
    "moderation_reports",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("item_id", Id, ForeignKey("moderation_items.id", ondelete="CASCADE"), nullable=False),
    Column("reporter_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("reason", String(16), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("item_id", "reporter_id", name="uq_moderation_reports_item_reporter"),
)

# -- disputes (migration 0011_trust_safety; docs/disputes.md) -------------------------------------

disputes = Table(
    "disputes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "conversation_id", Id, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    ),
    Column("buyer_id", Id, ForeignKey("users.id"), nullable=False),
    Column("seller_id", Id, ForeignKey("users.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),  # integer minor units
    Column("currency", String(3), nullable=False),
    Column("reference", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("opened_by", String(100), nullable=False),
    Column("assignee_id", Id, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("status_since", Timestamp, nullable=False),
    # The current status's SLA deadline (null once final) and when the scheduler fired on it:
    # set by one conditional UPDATE, so a deadline fires once across restarts and nodes.
    Column("deadline_at", Timestamp, nullable=True),
    Column("sla_breached_at", Timestamp, nullable=True),
    Column("outcome", String(20), nullable=True),
    Column("seller_amount", BigInteger, nullable=True),
    Column("buyer_amount", BigInteger, nullable=True),
    Column("resolved_at", Timestamp, nullable=True),
    Column("version", BigInteger, nullable=False),
    Index("ix_disputes_status_deadline", "status", "deadline_at"),
    Index("ix_disputes_conversation_id", "conversation_id"),
)

dispute_events = Table(
    "dispute_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dispute_id", Id, ForeignKey("disputes.id", ondelete="CASCADE"), nullable=False),
    Column("at", Timestamp, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=True),
    Column("reason", Text, nullable=False),
    Column("detail", Json, nullable=False),
    Index("ix_dispute_events_dispute_id", "dispute_id"),
)

# Messages and files pinned as evidence, copied when pinned (a later removal keeps the copy).
dispute_evidence = Table(
    "dispute_evidence",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dispute_id", Id, ForeignKey("disputes.id", ondelete="CASCADE"), nullable=False),
    Column("message_id", Id, nullable=True),
    Column("attachment_id", String(40), nullable=True),
    Column("sender_id", Id, nullable=True),
    Column("body", Text, nullable=False),
    Column("attachments", Json, nullable=False),
    Column("note", Text, nullable=False),
    Column("pinned_by", String(100), nullable=False),
    Column("pinned_at", Timestamp, nullable=False),
    UniqueConstraint("dispute_id", "message_id", name="uq_dispute_evidence_message"),
    UniqueConstraint("dispute_id", "attachment_id", name="uq_dispute_evidence_attachment"),
)

# Webhook outbox: written in the transaction of the change it reports, delivered (and retried)
# by whichever node claims it first; `id` is the delivery id receivers deduplicate on.
dispute_webhooks = Table(
    "dispute_webhooks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dispute_id", Id, ForeignKey("disputes.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(40), nullable=False),
    Column("payload", Json, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Timestamp, nullable=False),
    Column("claimed_until", Timestamp, nullable=True),
    Column("delivered_at", Timestamp, nullable=True),
    Column("failed_at", Timestamp, nullable=True),
    Column("last_error", Text, nullable=False),
    Index("ix_dispute_webhooks_due", "delivered_at", "failed_at", "next_attempt_at"),
)

# -- notifications (migration 0007; docs/notifications.md) ---------------------------------------

# One row per new message, written in the transaction that stores it (the group commit), so a
# crash can neither lose a notification nor announce a message that was never stored.
notification_outbox = Table(
    "notification_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "message_id", Id, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, unique=True
    ),
    Column("conversation_id", Id, nullable=False),
    Column("sender_id", Id, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

# A message one member has not heard of yet, due at `due_at` if still unread by then.
notification_pending = Table(
    "notification_pending",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("message_id", Id, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    Column("conversation_id", Id, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("due_at", Timestamp, nullable=False),
    Column("urgent", Boolean, nullable=False),
    Index("ix_notification_pending_due_at", "due_at"),
)

# One notification on one channel to one address: the unique key is the deduplication key
# (user, message or digest, channel, push subscription), so no event or restart sends it twice.
notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("subject", String(64), nullable=False),  # "message:<id>" | "digest:<first id>"
    Column("target", String(64), nullable=False),  # push subscription id; "" otherwise
    Column("payload", Json, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Timestamp, nullable=False),
    Column("lease_until", Timestamp, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp, nullable=True),
    UniqueConstraint(
        "user_id", "subject", "channel", "target", name="uq_notification_deliveries_dedup"
    ),
    Index("ix_notification_deliveries_status_next", "status", "next_attempt_at"),
    Index("ix_notification_deliveries_finished_at", "finished_at"),
)

notification_preferences = Table(
    "notification_preferences",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("email", String(254), nullable=True),
    Column("email_enabled", Boolean, nullable=False),
    Column("push_enabled", Boolean, nullable=False),
    Column("telegram_enabled", Boolean, nullable=False),
    Column("telegram_chat_id", String(64), nullable=True),
    # {"chat_id", "code_hash", "tries", "expires_at"} while a Telegram link waits for its code.
    Column("telegram_pending", Json, nullable=True),
    Column("quiet_hours", Json, nullable=True),  # {"timezone", "start", "end"}
    Column("last_notified_at", Timestamp, nullable=True),
    Column("updated_at", Timestamp, nullable=False),
)

notification_mutes = Table(
    "notification_mutes",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "conversation_id",
        Id,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("muted_until", Timestamp, nullable=True),  # null: until unmuted
    Column("created_at", Timestamp, nullable=False),
)

push_subscriptions = Table(
    "push_subscriptions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # The push service's capability URL: as secret as a token, never logged.
    Column("endpoint", String(2000), nullable=False, unique=True),
    Column("p256dh", String(200), nullable=False),
    Column("auth", String(100), nullable=False),
    Column("user_agent", String(300), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_push_subscriptions_user_id", "user_id"),
)

# -- calls and single sign-on (migration 0008; docs/calls.md, docs/sso.md) ----------------------

# One row per call; the state machine is core/calls.py. Transitions are conditional UPDATEs, so
# two nodes acting on the same call (an answer racing the ring timeout) cannot both win.
calls = Table(
    "calls",
    metadata,
    # Made by the caller's client (an offer retried with the same id is the same call).
    Column("id", String(64), primary_key=True),
    Column(
        "conversation_id", Id, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    ),
    Column("caller_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("caller_device", String(64), nullable=False),
    Column("callee_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("callee_device", String(64), nullable=True),
    Column("media", String(8), nullable=False),
    Column("state", String(16), nullable=False),  # ringing | active | ended | missed
    Column("end_reason", String(16), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    # A ringing call past this is missed; every node sweeps for them, so it survives restarts.
    Column("ring_deadline", Timestamp, nullable=False),
    Column("answered_at", Timestamp, nullable=True),
    Column("ended_at", Timestamp, nullable=True),
    Column("offer_sdp", Text, nullable=False),
    Column("answer_sdp", Text, nullable=True),
    # ICE candidates each side sent (bounded), replayed to a device that reconnects mid-call.
    Column("caller_candidates", Json, nullable=False),
    Column("callee_candidates", Json, nullable=False),
    # When the call's record went into the conversation's timeline (null: still to write).
    Column("recorded_at", Timestamp, nullable=True),
    Index("ix_calls_state_ring_deadline", "state", "ring_deadline"),
    Index("ix_calls_conversation_id", "conversation_id"),
    Index("ix_calls_caller_id", "caller_id"),
    Index("ix_calls_callee_id", "callee_id"),
)

# What a live call holds: `device:<user>:<device>` (one live call per device) and
# `pair:<conversation>:<low user>:<high user>` (two people calling each other at once get one
# call, not two). Inserted with the call or its answer, deleted in the transaction that ends it.
call_claims = Table(
    "call_claims",
    metadata,
    Column("key", String(160), primary_key=True),
    Column("call_id", String(64), ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
    Index("ix_call_claims_call_id", "call_id"),
)

# A user's accounts at OpenID providers: (provider, subject) signs in as `user_id`.
user_identities = Table(
    "user_identities",
    metadata,
    Column("provider", String(64), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("email", String(320), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("last_login_at", Timestamp, nullable=False),
    Index("ix_user_identities_user_id", "user_id"),
)

# -- export and privacy (migration 0014_export; docs/privacy.md) ----------------------------------

# Background export jobs: a conversation's package, or a person's own data (the same shape).
export_jobs = Table(
    "export_jobs",
    metadata,
    Column("id", String(40), primary_key=True),  # "exp_" + random: not guessable
    Column("kind", String(16), nullable=False),  # conversation | person
    Column("subject_id", Id, nullable=False),  # the conversation id, or the person's user id
    Column("requested_by", Id, nullable=True),  # null: the CLI
    Column("requested_by_name", String(100), nullable=False),
    Column("status", String(16), nullable=False),  # queued | running | done | failed
    Column("done", BigInteger, nullable=False, server_default="0"),  # progress: items written
    Column("total", BigInteger, nullable=False, server_default="0"),
    Column("size", BigInteger, nullable=True),  # the finished ZIP's bytes and sha256
    Column("sha256", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("params", Json, nullable=False),
    # The node running it and when it last said so: a job whose runner went quiet is re-run.
    Column("runner", String(64), nullable=True),
    Column("heartbeat_at", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp, nullable=True),
    Column("expires_at", Timestamp, nullable=True),
    Index("ix_export_jobs_status", "status"),
    Index("ix_export_jobs_requested_by", "requested_by"),
)

# A conversation under legal hold is never purged by retention nor erased (e.g. an open dispute).
legal_holds = Table(
    "legal_holds",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "conversation_id", Id, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    ),
    Column("reason", Text, nullable=False),
    Column("placed_by", String(100), nullable=False),
    Column("placed_at", Timestamp, nullable=False),
    Column("released_at", Timestamp, nullable=True),
    Column("released_by", String(100), nullable=True),
    Index("ix_legal_holds_conversation_id", "conversation_id"),
)
