"""Parley's running parts for one process, built from settings and shut down in order."""

from __future__ import annotations

from dataclasses import dataclass

from parley.bus import Bus
from parley.bus.memory import MemoryBus
from parley.bus.redis import RedisBus
from parley.core.models import Appended
from parley.core.writer import MessageWriter
from parley.features.inbox.service import Inboxes
from parley.features.livechat.branches import Branches
from parley.features.livechat.geoip import GeoIP
from parley.features.livechat.service import Livechat
from parley.features.release.service import Release
from parley.features.widget.challenge import Challenges
from parley.features.widget.guard import Network, WidgetLimits, parse_networks
from parley.features.widget.service import Widget
from parley.metrics import (
    MESSAGE_RETRIES,
    MESSAGES_STORED,
    READ_ROLLBACK_DETECTED,
    WRITER_BATCH_SIZE,
)
from parley.realtime.ephemeral import Ephemeral, MemoryEphemeral, RedisEphemeral
from parley.services.attachments import Attachments
from parley.services.identity import Identity
from parley.services.stream import StreamService
from parley.services.timeline import Timeline
from parley.settings import Settings
from parley.storage.attachments import AttachmentStore
from parley.storage.blobs import LocalBlobStore
from parley.storage.conversations import ConversationStore
from parley.storage.database import Database
from parley.storage.inboxes import InboxStore
from parley.storage.livechat import LivechatStore
from parley.storage.messages import MessageStore
from parley.storage.stream import StreamStore
from parley.storage.users import TokenStore, UserStore


@dataclass
class Services:
    settings: Settings
    db: Database
    identity: Identity
    timeline: Timeline
    attachments: Attachments
    writer: MessageWriter
    stream: StreamService
    release: Release
    inboxes: Inboxes
    livechat: Livechat
    branches: Branches
    widget: Widget
    widget_limits: WidgetLimits
    widget_challenges: Challenges
    widget_networks: list[Network]

    @classmethod
    def build(cls, settings: Settings) -> Services:
        db = Database(
            settings.effective_database_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        users = UserStore(db)
        identity = Identity(users, TokenStore(db))
        message_store = MessageStore(db)
        attachment_store = AttachmentStore(db)
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
        inbox_store = InboxStore(db)
        livechat_store = LivechatStore(db)
        branches = Branches(livechat_store, users)
        livechat = Livechat(
            settings=settings,
            store=livechat_store,
            inboxes=inbox_store,
            users=users,
            conversations=timeline.conversations,
            geoip=GeoIP(settings.geoip_database),
            publish=stream.publish,
            online=stream.online,
        )
        return cls(
            settings=settings,
            db=db,
            identity=identity,
            timeline=timeline,
            attachments=Attachments(
                timeline=timeline,
                store=attachment_store,
                blobs=LocalBlobStore(settings.attachments_dir),
                max_bytes=settings.attachment_max_bytes,
            ),
            writer=writer,
            stream=stream,
            release=Release.build(settings, db, stream=stream, users=users),
            inboxes=Inboxes(inbox_store, timeline, branches),
            livechat=livechat,
            branches=branches,
            widget=Widget(
                settings=settings,
                store=inbox_store,
                identity=identity,
                timeline=timeline,
                livechat=livechat,
            ),
            widget_limits=WidgetLimits(
                settings,
                StreamService.limiter_storage_for(settings.redis_url, settings.redis_prefix),
            ),
            widget_challenges=Challenges(settings, ephemeral),
            widget_networks=parse_networks(settings.trusted_proxies),
        )

    async def start(self) -> None:
        self.writer.start()
        await self.stream.start()
        await self.release.start()

    async def stop(self) -> None:
        self.stream.drain()
        await self.release.stop()
        await self.writer.stop()
        await self.livechat.stop()
        await self.stream.stop()
        await self.db.dispose()
