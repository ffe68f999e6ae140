"""Services: the core parts plus every feature, wired for one process (the server and the CLI).

The one place that knows every feature; `create_app` mounts their routes, the CLI calls them.
"""

from __future__ import annotations

from dataclasses import dataclass

from parley import metrics
from parley.core.events import LivechatChangedEvent
from parley.core.models import User
from parley.core.writer import MessageWriter
from parley.features.calls.service import Calls
from parley.features.disputes.scheduler import DisputeScheduler
from parley.features.disputes.service import FLAG as DISPUTE_FLAG
from parley.features.disputes.service import Disputes
from parley.features.disputes.webhooks import WebhookSender
from parley.features.export.service import Exports
from parley.features.inbox.service import Inboxes
from parley.features.livechat.branches import Branches
from parley.features.livechat.directory import Directory
from parley.features.livechat.geoip import GeoIP
from parley.features.livechat.service import Livechat
from parley.features.moderation.classifier import HttpClassifier
from parley.features.moderation.filters import ModerationGuard
from parley.features.moderation.service import Moderation
from parley.features.notify.service import Notifications
from parley.features.ops.backup import BackupAgeGauge
from parley.features.ops.maintenance import Maintenance
from parley.features.privacy.service import Privacy
from parley.features.release.gates import SafetyCounts
from parley.features.release.service import Release
from parley.features.sso.service import SingleSignOn
from parley.features.widget.challenge import Challenges
from parley.features.widget.guard import WidgetLimits
from parley.features.widget.service import Widget
from parley.services.attachments import Attachments
from parley.services.audit import AuditLog
from parley.services.container import Core
from parley.services.identity import Identity
from parley.services.search import Search
from parley.services.stream import StreamService
from parley.services.threads import Threads
from parley.services.timeline import Timeline
from parley.services.volumes import Volumes
from parley.settings import Settings
from parley.storage.attachments import AttachmentStore
from parley.storage.calls import CallStore
from parley.storage.database import Database
from parley.storage.disputes import DisputeStore
from parley.storage.exports import ExportStore
from parley.storage.flags import FlagStore
from parley.storage.identities import IdentityStore
from parley.storage.inboxes import InboxStore
from parley.storage.livechat import LivechatStore
from parley.storage.migrate import revision_of, running_schema_problem
from parley.storage.moderation import ModerationStore
from parley.storage.notify import NotifyStore
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
    audit: AuditLog
    moderation: Moderation
    disputes: Disputes
    dispute_scheduler: DisputeScheduler
    notifications: Notifications
    calls: Calls
    sso: SingleSignOn
    maintenance: Maintenance
    volumes: Volumes
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
            directory=_directory(settings, stream, inbox_store, livechat_store),
        )
        moderation = _moderation(settings, core)
        moderation.on_released = livechat.on_message_released
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
        disputes, scheduler = _disputes(settings, core, moderation, release)

        async def safety() -> SafetyCounts:
            _, overdue = await disputes.counts()
            return SafetyCounts(
                overdue_disputes=overdue, moderation_backlog=await moderation.backlog()
            )

        release.rollout.safety = safety
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
        privacy_store = PrivacyStore(db)
        # An erasure ends the person's widget sessions: no node may go on serving them.
        privacy_store.on_change.append(livechat.directory.changed)
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
                core.limiter_storage,
            ),
            widget_challenges=Challenges(settings, core.ephemeral),
            audit=core.audit,
            moderation=moderation,
            disputes=disputes,
            dispute_scheduler=scheduler,
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
            volumes=Volumes(
                {"attachments": settings.attachments_dir}
                | ({"database": db.sqlite_file.parent} if db.sqlite_file else {}),
                min_free_bytes=settings.storage_min_free_bytes,
            ),
            exports=exports,
            privacy=Privacy(
                settings=settings,
                store=privacy_store,
                timeline=timeline,
                blobs=core.attachments.blobs,
                audit=core.audit,
                remove_export=exports.remove_file,
            ),
        )

    async def check_schema(self) -> tuple[str, bool]:
        """What /readyz says about the schema, and whether this node can serve on it."""
        return running_schema_problem(await revision_of(self.db))

    async def start(self) -> None:
        self.writer.start()
        await self.moderation.guard.start()
        await self.stream.start()
        await self.release.start()
        self.dispute_scheduler.start()
        await self.notifications.start()
        self.calls.start()
        self.maintenance.stream = self.stream
        await self.maintenance.start()
        metrics.BACKUP_AGE.set_function(BackupAgeGauge(self.settings.effective_backup_dir))
        self.exports.start()
        self.privacy.start()

    async def stop(self) -> None:
        self.stream.drain()
        await self.maintenance.stop()
        await self.release.stop()
        await self.dispute_scheduler.stop()
        await self.moderation.guard.stop()
        await self.calls.stop()
        await self.exports.stop()
        await self.privacy.stop()
        await self.writer.stop()
        await self.notifications.stop()
        await self.livechat.stop()
        await self.stream.stop()
        await self.db.dispose()


def _moderation(settings: Settings, core: Core) -> Moderation:
    """The filter pipeline goes on the timeline's write path; the service works the queue."""
    store = ModerationStore(core.db)
    classifier = None
    if settings.moderation_classifier_url:
        classifier = HttpClassifier(
            settings.moderation_classifier_url,
            token=settings.moderation_classifier_token,
            timeout=settings.moderation_classifier_timeout_seconds,
        )
    guard = ModerationGuard(
        store=store,
        limiter_storage=core.limiter_storage,
        classifier=classifier,
        refresh_seconds=settings.moderation_refresh_seconds,
    )
    core.timeline.guard = guard
    return Moderation(
        store=store,
        guard=guard,
        timeline=core.timeline,
        users=core.users,
        audit=core.audit,
        classifier_configured=classifier is not None,
        publish=core.stream.publish,
        live=lambda: core.stream.hub is not None,
    )


def _disputes(
    settings: Settings, core: Core, moderation: Moderation, release: Release
) -> tuple[Disputes, DisputeScheduler]:
    async def flag_on(user: User) -> bool:
        evaluated = await release.flags.evaluate_for(user, {})
        found = evaluated.get(DISPUTE_FLAG)
        return found is not None and found.value

    store = DisputeStore(core.db)
    disputes = Disputes(
        settings=settings,
        store=store,
        users=core.users,
        timeline=core.timeline,
        attachments=AttachmentStore(core.db),
        messages=moderation.store,
        audit=core.audit,
        flag_on=flag_on,
        publish=core.stream.publish,
        live=lambda: core.stream.hub is not None,
    )
    webhooks = WebhookSender(
        store,
        url=settings.dispute_webhook_url,
        secret=settings.dispute_webhook_secret,
        max_attempts=settings.dispute_webhook_max_attempts,
        timeout=settings.dispute_webhook_timeout_seconds,
    )
    return disputes, DisputeScheduler(settings=settings, disputes=disputes, webhooks=webhooks)


def _directory(
    settings: Settings, stream: StreamService, inboxes: InboxStore, livechat: LivechatStore
) -> Directory:
    """The node's copy of inboxes, branches and sessions; changes drop it on every node."""
    directory = Directory(inboxes, livechat, ttl=settings.livechat_cache_seconds)
    directory.publish = stream.publish
    stream.node_listeners[LivechatChangedEvent().type] = directory.on_bus_event
    return directory
