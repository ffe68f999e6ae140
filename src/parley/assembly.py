"""Services: the core parts plus every feature, wired for one process (the server and the CLI).

The one place that knows every feature; `create_app` mounts their routes, the CLI calls them.
"""

from __future__ import annotations

from dataclasses import dataclass

from parley.core.writer import MessageWriter
from parley.features.export.service import Exports
from parley.features.inbox.service import Inboxes
from parley.features.livechat.branches import Branches
from parley.features.livechat.geoip import GeoIP
from parley.features.livechat.service import Livechat
from parley.features.privacy.service import Privacy
from parley.features.release.service import Release
from parley.features.widget.challenge import Challenges
from parley.features.widget.guard import Network, WidgetLimits, parse_networks
from parley.features.widget.service import Widget
from parley.services.attachments import Attachments
from parley.services.audit import AuditLog
from parley.services.container import Core
from parley.services.identity import Identity
from parley.services.search import Search
from parley.services.stream import StreamService
from parley.services.threads import Threads
from parley.services.timeline import Timeline
from parley.settings import Settings
from parley.storage.database import Database
from parley.storage.exports import ExportStore
from parley.storage.inboxes import InboxStore
from parley.storage.livechat import LivechatStore
from parley.storage.privacy import PrivacyStore


@dataclass
class Services:
    settings: Settings
    db: Database
    identity: Identity
    timeline: Timeline
    threads: Threads
    search: Search
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
    audit: AuditLog
    exports: Exports
    privacy: Privacy

    @classmethod
    def build(cls, settings: Settings) -> Services:
        core = Core.build(settings)
        db, users, timeline, stream = core.db, core.users, core.timeline, core.stream
        inbox_store = InboxStore(db)
        livechat_store = LivechatStore(db)
        branches = Branches(livechat_store, users, core.audit)
        livechat = Livechat(
            settings=settings,
            store=livechat_store,
            inboxes=inbox_store,
            users=users,
            conversations=timeline.conversations,
            audit=core.audit,
            geoip=GeoIP(settings.geoip_database),
            publish=stream.publish,
            online=stream.online,
        )
        exports = Exports(
            store=ExportStore(db),
            blobs=core.attachments.blobs,
            timeline=timeline,
            audit=core.audit,
            directory=settings.data_dir / "exports",
            keep_hours=settings.export_keep_hours,
            node=stream.bus.node_id,
            staff_access=livechat.access_conversation,
        )
        return cls(
            settings=settings,
            db=db,
            identity=core.identity,
            timeline=timeline,
            threads=core.threads,
            search=core.search,
            attachments=core.attachments,
            writer=core.writer,
            stream=stream,
            release=Release.build(settings, db, stream=stream, users=users, audit=core.audit),
            inboxes=Inboxes(inbox_store, timeline, core.audit, branches),
            livechat=livechat,
            branches=branches,
            widget=Widget(
                settings=settings,
                store=inbox_store,
                identity=core.identity,
                timeline=timeline,
                livechat=livechat,
            ),
            widget_limits=WidgetLimits(
                settings,
                StreamService.limiter_storage_for(settings.redis_url, settings.redis_prefix),
            ),
            widget_challenges=Challenges(settings, core.ephemeral),
            widget_networks=parse_networks(settings.trusted_proxies),
            audit=core.audit,
            exports=exports,
            privacy=Privacy(
                settings=settings,
                store=PrivacyStore(db),
                timeline=timeline,
                blobs=core.attachments.blobs,
                audit=core.audit,
                remove_export=exports.remove_file,
            ),
        )

    async def start(self) -> None:
        self.writer.start()
        await self.stream.start()
        await self.release.start()
        self.exports.start()
        self.privacy.start()

    async def stop(self) -> None:
        self.stream.drain()
        await self.release.stop()
        await self.exports.stop()
        await self.privacy.stop()
        await self.writer.stop()
        await self.livechat.stop()
        await self.stream.stop()
        await self.db.dispose()
