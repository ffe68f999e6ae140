"""Parley's running parts for one process, built from settings and shut down in order."""

from __future__ import annotations

from dataclasses import dataclass

from parley.core.models import Appended
from parley.core.writer import MessageWriter
from parley.metrics import (
    MESSAGE_RETRIES,
    MESSAGES_STORED,
    READ_ROLLBACK_DETECTED,
    WRITER_BATCH_SIZE,
)
from parley.services.attachments import Attachments
from parley.services.identity import Identity
from parley.services.timeline import Timeline
from parley.settings import Settings
from parley.storage.attachments import AttachmentStore
from parley.storage.blobs import LocalBlobStore
from parley.storage.conversations import ConversationStore
from parley.storage.database import Database
from parley.storage.messages import MessageStore
from parley.storage.users import TokenStore, UserStore


@dataclass
class Services:
    settings: Settings
    db: Database
    identity: Identity
    timeline: Timeline
    attachments: Attachments
    writer: MessageWriter

    @classmethod
    def build(cls, settings: Settings) -> Services:
        db = Database(
            settings.effective_database_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        users = UserStore(db)
        message_store = MessageStore(db)
        shards = settings.writer_shards or (4 if db.is_postgres else 1)
        writer = MessageWriter(
            message_store,
            shards=shards,
            max_batch=settings.writer_max_batch,
            on_commit=_count_stored,
            on_batch=WRITER_BATCH_SIZE.observe,
        )
        attachment_store = AttachmentStore(db)
        timeline = Timeline(
            users=users,
            conversations=ConversationStore(db),
            messages=message_store,
            attachments=attachment_store,
            writer=writer,
            on_read_rollback=READ_ROLLBACK_DETECTED.labels("rest").inc,
        )
        return cls(
            settings=settings,
            db=db,
            identity=Identity(users, TokenStore(db)),
            timeline=timeline,
            attachments=Attachments(
                timeline=timeline,
                store=attachment_store,
                blobs=LocalBlobStore(settings.attachments_dir),
                max_bytes=settings.attachment_max_bytes,
            ),
            writer=writer,
        )

    async def start(self) -> None:
        self.writer.start()

    async def stop(self) -> None:
        await self.writer.stop()
        await self.db.dispose()


async def _count_stored(results: list[Appended]) -> None:
    created = sum(1 for result in results if result.created)
    MESSAGES_STORED.inc(created)
    MESSAGE_RETRIES.inc(len(results) - created)
