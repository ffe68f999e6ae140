"""Parley's core running parts for one process: database, identity, timeline, writer, stream.

Features (release, live chat, widget...) are wired on top of these in `parley.assembly`.
"""

from __future__ import annotations

from dataclasses import dataclass

from parley.bus import Bus
from parley.bus.memory import MemoryBus
from parley.bus.redis import RedisBus
from parley.core.models import Appended
from parley.core.writer import MessageWriter
from parley.metrics import (
    MESSAGE_RETRIES,
    MESSAGES_STORED,
    READ_ROLLBACK_DETECTED,
    WRITER_BATCH_SIZE,
)
from parley.realtime.ephemeral import Ephemeral, MemoryEphemeral, RedisEphemeral
from parley.services.attachments import Attachments
from parley.services.audit import AuditLog
from parley.services.identity import Identity
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

    @classmethod
    def build(cls, settings: Settings) -> Core:
        db = Database(
            settings.effective_database_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        users = UserStore(db)
        identity = Identity(users, TokenStore(db))
        message_store = MessageStore(db)
        attachment_store = AttachmentStore(db)
        blobs = LocalBlobStore(settings.attachments_dir)
        writer = MessageWriter(
            message_store,
            shards=settings.writer_shards,
            max_batch=settings.writer_max_batch,
            on_batch=WRITER_BATCH_SIZE.observe,
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
            limiter_storage=StreamService.limiter_storage_for(
                settings.redis_url, settings.redis_prefix
            ),
        )
        # Events leave only after their commit, through the stream service.
        timeline.publish = stream.publish

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
            audit=AuditLog(AuditStore(db)),
        )
