"""Parley's core running parts for one process: database, identity, timeline, writer, stream.

Features (release, live chat, widget...) are wired on top of these in `parley.assembly`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from limits.aio.storage import Storage

from parley.background import LoopHealth
from parley.bus import Bus
from parley.bus.memory import MemoryBus
from parley.bus.redis import RedisBus
from parley.core.models import Appended
from parley.core.writer import MessageWriter
from parley.metrics import (
    MESSAGE_RETRIES,
    MESSAGES_STORED,
    READ_ROLLBACK_DETECTED,
    SENDS,
    WRITER_BATCH_SIZE,
)
from parley.realtime.ephemeral import Ephemeral, MemoryEphemeral, RedisEphemeral
from parley.services.attachments import Attachments
from parley.services.audit import AuditLog
from parley.services.identity import Identity
from parley.services.ratelimits import RateLimits, limiter_storage_for
from parley.services.search import Search
from parley.services.stream import StreamService
from parley.services.threads import Threads
from parley.services.timeline import Timeline
from parley.settings import Settings
from parley.storage.attachments import AttachmentStore
from parley.storage.audit import AuditStore
from parley.storage.blobs import LocalBlobStore
from parley.storage.changes import MessageChangeStore
from parley.storage.conversations import ConversationStore
from parley.storage.database import Database
from parley.storage.messages import MessageStore
from parley.storage.search import SearchStore
from parley.storage.stream import StreamStore
from parley.storage.threads import ThreadStore
from parley.storage.users import TokenStore, UserStore


@dataclass
class Core:
    settings: Settings
    db: Database
    users: UserStore
    identity: Identity
    timeline: Timeline
    threads: Threads
    search: Search
    attachments: Attachments
    writer: MessageWriter
    stream: StreamService
    ephemeral: Ephemeral
    audit: AuditLog
    limiter_storage: Storage

    @classmethod
    def build(cls, settings: Settings) -> Core:
        db = Database(
            settings.effective_database_url,
            sqlite_synchronous=settings.sqlite_synchronous,
            timeout=settings.database_timeout_seconds,
        )
        users = UserStore(db)
        audit = AuditLog(AuditStore(db))
        # One counter store for every rate limit of this process (Redis: shared by all nodes).
        limiter_storage = limiter_storage_for(settings.redis_url, settings.redis_prefix)
        identity = Identity(
            users,
            TokenStore(db),
            login_limits=RateLimits(
                "login",
                {
                    "account": settings.auth_login_rate_per_account,
                    "ip": settings.auth_login_rate_per_ip,
                },
                limiter_storage,
            ),
            audit=audit,
        )
        message_store = MessageStore(db)
        attachment_store = AttachmentStore(db)
        blobs = LocalBlobStore(settings.attachments_dir)
        writer = MessageWriter(
            message_store,
            shards=settings.writer_shards,
            max_batch=settings.writer_max_batch,
            on_batch=WRITER_BATCH_SIZE.observe,
            on_failure=LoopHealth("message_writer").failed,
        )
        timeline = Timeline(
            users=users,
            conversations=ConversationStore(db),
            messages=message_store,
            attachments=attachment_store,
            writer=writer,
            changes=MessageChangeStore(db),
            blobs=blobs,
            edit_window_seconds=settings.edit_window_seconds,
            on_read_rollback=READ_ROLLBACK_DETECTED.labels("rest").inc,
            on_send=_send_outcome(settings.release_send_stall_ms / 1000),
            membership_cache_seconds=settings.membership_cache_seconds,
            membership_cache_size=settings.membership_cache_size,
        )
        threads = Threads(
            timeline=timeline,
            store=ThreadStore(db),
            on_read_rollback=READ_ROLLBACK_DETECTED.labels("rest").inc,
        )
        bus: Bus
        ephemeral: Ephemeral
        if settings.redis_url:
            prefix = settings.redis_prefix
            bus = RedisBus(settings.redis_url, channel=f"{prefix}events")
            ephemeral = RedisEphemeral(settings.redis_url, prefix=prefix)
        else:
            bus, ephemeral = MemoryBus(), MemoryEphemeral()
        stream = StreamService(
            settings=settings,
            store=StreamStore(db),
            timeline=timeline,
            identity=identity,
            bus=bus,
            ephemeral=ephemeral,
            limiter_storage=limiter_storage,
        )
        # Events leave only after their commit, through the stream service.
        timeline.publish = stream.publish
        identity.publish = stream.publish

        async def on_commit(results: list[Appended]) -> None:
            created = sum(1 for result in results if result.created)
            MESSAGES_STORED.inc(created)
            MESSAGE_RETRIES.inc(len(results) - created)
            await stream.publish_committed(results)

        writer.on_commit = on_commit
        return cls(
            settings=settings,
            db=db,
            users=users,
            identity=identity,
            timeline=timeline,
            threads=threads,
            search=Search(store=SearchStore(db), users=users),
            attachments=Attachments(
                timeline=timeline,
                store=attachment_store,
                blobs=blobs,
                max_bytes=settings.attachment_max_bytes,
            ),
            writer=writer,
            stream=stream,
            ephemeral=ephemeral,
            audit=audit,
            limiter_storage=limiter_storage,
        )


def _send_outcome(stall_seconds: float) -> Callable[[float, bool], None]:
    """Count each send as ok, slow or failed (seed 004 §4.4's send stall, a P1 gate)."""

    def count(seconds: float, failed: bool) -> None:
        outcome = "failed" if failed else "slow" if seconds > stall_seconds else "ok"
        SENDS.labels(outcome).inc()

    return count
