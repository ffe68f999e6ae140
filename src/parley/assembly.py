"""Services: the core parts plus every feature, wired for one process (the server and the CLI).

The one place that knows every feature; `create_app` mounts their routes, the CLI calls them.
"""

from __future__ import annotations

from dataclasses import dataclass

from parley import metrics
from parley.core.writer import MessageWriter
from parley.features.calls.service import Calls
from parley.features.inbox.service import Inboxes
from parley.features.livechat.branches import Branches
from parley.features.livechat.geoip import GeoIP
from parley.features.livechat.service import Livechat
from parley.features.notify.service import Notifications
from parley.features.ops.backup import BackupAgeGauge
from parley.features.ops.maintenance import Maintenance
from parley.features.release.service import Release
from parley.features.sso.service import SingleSignOn
from parley.features.widget.challenge import Challenges
from parley.features.widget.guard import Network, WidgetLimits, parse_networks
from parley.features.widget.service import Widget
from parley.services.attachments import Attachments
from parley.services.audit import AuditLog
from parley.services.container import Core
from parley.services.identity import Identity
from parley.services.stream import StreamService
from parley.services.timeline import Timeline
from parley.settings import Settings
from parley.storage.calls import CallStore
from parley.storage.database import Database
from parley.storage.flags import FlagStore
from parley.storage.identities import IdentityStore
from parley.storage.inboxes import InboxStore
from parley.storage.livechat import LivechatStore
from parley.storage.migrate import revision_of, running_schema_problem
from parley.storage.notify import NotifyStore


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
    audit: AuditLog
    notifications: Notifications
    calls: Calls
    sso: SingleSignOn
    maintenance: Maintenance

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
        notifications = Notifications(
            settings=settings,
            store=NotifyStore(db),
            flags=FlagStore(db),
            timeline=timeline,
            online=stream.online,
        )
        release = Release.build(
            settings,
            db,
            stream=stream,
            users=users,
            audit=core.audit,
            attachments=core.attachments,
        )
        release.rollout.on_kill = notifications.alert_kill
        release.rollout.notification_outcomes = notifications.store.count_outcomes
        calls = Calls(
            settings=settings, store=CallStore(db), timeline=timeline, publish=stream.publish
        )
        # Call signals travel on the stream: `call.*` WebSocket frames, and a stream that opens
        # while a call rings hears of it.
        stream.frame_handlers.update(calls.frame_handlers())
        stream.greeters.append(calls.greet)
        maintenance = Maintenance(settings, stream.store, users, core.audit)
        stream.admit = maintenance.check_admits
        return cls(
            settings=settings,
            db=db,
            identity=core.identity,
            timeline=timeline,
            attachments=core.attachments,
            writer=core.writer,
            stream=stream,
            release=release,
            inboxes=Inboxes(inbox_store, timeline, core.audit, branches),
            livechat=livechat,
            branches=branches,
            widget=Widget(
                settings=settings,
                store=inbox_store,
                identity=core.identity,
                timeline=timeline,
                livechat=livechat,
                notifications=notifications,
            ),
            widget_limits=WidgetLimits(
                settings,
                StreamService.limiter_storage_for(settings.redis_url, settings.redis_prefix),
            ),
            widget_challenges=Challenges(settings, core.ephemeral),
            widget_networks=parse_networks(settings.trusted_proxies),
            audit=core.audit,
            notifications=notifications,
            calls=calls,
            sso=SingleSignOn(
                settings=settings,
                identity=core.identity,
                identities=IdentityStore(db),
                ephemeral=core.ephemeral,
                audit=core.audit,
            ),
            maintenance=maintenance,
        )

    async def check_schema(self) -> tuple[str, bool]:
        """What /readyz says about the schema, and whether this node can serve on it."""
        return running_schema_problem(await revision_of(self.db))

    async def start(self) -> None:
        self.writer.start()
        await self.stream.start()
        await self.release.start()
        await self.notifications.start()
        self.calls.start()
        self.maintenance.stream = self.stream
        await self.maintenance.start()
        metrics.BACKUP_AGE.set_function(BackupAgeGauge(self.settings.effective_backup_dir))

    async def stop(self) -> None:
        self.stream.drain()
        await self.maintenance.stop()
        await self.release.stop()
        await self.calls.stop()
        await self.writer.stop()
        await self.notifications.stop()
        await self.livechat.stop()
        await self.stream.stop()
        await self.db.dispose()
