"""Notifications: a member's preferences, mutes, push subscriptions and Telegram link; the
worker's wiring; the drop rate; unsubscribe links; operational alerts over Telegram.

Every member action is on the caller's own settings (role: any signed-in user, for themselves);
the status and dead-letter actions are for admins.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from parley import metrics
from parley.core.errors import BadInput, Forbidden, InvalidValue, NotFound, Unavailable
from parley.core.models import Role, User
from parley.core.notify import Channel, Preferences, QuietHours, Rules
from parley.features.notify.channels import (
    EmailSender,
    PushSender,
    Sender,
    TelegramBot,
    TelegramError,
    TelegramSender,
)
from parley.features.notify.signing import Resume, Signer
from parley.features.notify.worker import NotificationWorker, Online
from parley.services.timeline import Timeline
from parley.settings import Settings
from parley.storage.flags import FlagStore
from parley.storage.notify import NotifyStore, PushSubscription

log = logging.getLogger(__name__)

TELEGRAM_CODE_TTL = timedelta(minutes=15)
TELEGRAM_CODE_TRIES = 5
METRICS_EVERY_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class DropRate:
    channel: str
    sent: int
    dropped: int
    expired: int

    @property
    def attempted(self) -> int:
        return self.sent + self.dropped

    @property
    def rate(self) -> float:
        return self.dropped / self.attempted if self.attempted else 0.0


def check_admin(user: User) -> None:
    if user.role is not Role.ADMIN:
        raise Forbidden("only admins see the notification queues")


def senders_for(settings: Settings, store: NotifyStore, bot: TelegramBot) -> dict[Channel, Sender]:
    """The channels this deployment has configured (SMTP host, VAPID key, bot token)."""
    senders: dict[Channel, Sender] = {}
    if settings.smtp_host:
        senders[Channel.EMAIL] = EmailSender(settings)
    if settings.push_vapid_private_key:
        senders[Channel.PUSH] = PushSender(settings, store)
    if bot.configured:
        senders[Channel.TELEGRAM] = TelegramSender(bot)
    return senders


class Notifications:
    def __init__(
        self,
        *,
        settings: Settings,
        store: NotifyStore,
        flags: FlagStore,
        timeline: Timeline,
        online: Online,
        rules: Rules | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.timeline = timeline
        self.rules = rules or Rules()
        self.bot = TelegramBot(settings)
        self.worker = NotificationWorker(
            settings=settings,
            store=store,
            flags=flags,
            online=online,
            senders=senders_for(settings, store, self.bot),
            rules=self.rules,
        )
        self._metrics_task: asyncio.Task[None] | None = None

    @property
    def channels(self) -> set[Channel]:
        return set(self.worker.senders)

    # -- lifecycle (a serving node) ------------------------------------------------------------

    async def start(self) -> None:
        if self.settings.notify_worker == "in_process":
            self.worker.start()
        self._metrics_task = asyncio.create_task(self._export_metrics(), name="notify-metrics")

    async def stop(self) -> None:
        if self._metrics_task is not None:
            self._metrics_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._metrics_task
            self._metrics_task = None
        await self.worker.stop()
        await self.bot.close()

    async def _export_metrics(self) -> None:
        while True:
            try:
                await self.refresh_metrics()
            except Exception as exc:  # the database may be restarting
                log.warning("refreshing notification metrics failed: %s", exc)
            await asyncio.sleep(METRICS_EVERY_SECONDS)

    async def refresh_metrics(self) -> list[DropRate]:
        """The drop rate per channel (every worker's deliveries, from the database) and queues."""
        rates = await self.drop_rates()
        for rate in rates:
            metrics.NOTIFICATION_DROP_RATE.labels(rate.channel).set(rate.rate)
        by_status = await self.store.count_by_status()
        metrics.NOTIFICATIONS_QUEUED.labels("outbox").set(await self.store.count_outbox())
        metrics.NOTIFICATIONS_QUEUED.labels("pending").set(await self.store.count_pending())
        metrics.NOTIFICATIONS_QUEUED.labels("deliveries").set(
            by_status.get("pending", 0) + by_status.get("sending", 0)
        )
        return rates

    async def drop_rates(self, since: datetime | None = None) -> list[DropRate]:
        """Dropped (dead-lettered) / attempted (sent + dropped) per channel since `since`."""
        start = since or datetime.now(UTC) - timedelta(
            seconds=self.settings.notify_drop_window_seconds
        )
        counts = await self.store.count_outcomes(start)
        return [
            DropRate(
                channel=channel.value,
                sent=counts.get(channel.value, {}).get("sent", 0),
                dropped=counts.get(channel.value, {}).get("dead", 0),
                expired=counts.get(channel.value, {}).get("expired", 0),
            )
            for channel in Channel
        ]

    # -- preferences and mutes -------------------------------------------------------------------

    async def get_preferences(self, user: User) -> Preferences:
        return await self.store.get_preferences(user.id)

    async def do_update_preferences(self, user: User, changes: dict[str, Any]) -> Preferences:
        values: dict[str, Any] = {}
        for name in ("email", "email_enabled", "push_enabled", "telegram_enabled"):
            if name in changes:
                values[name] = changes[name]
        if "quiet_hours" in changes:
            quiet = changes["quiet_hours"]
            values["quiet_hours"] = (
                QuietHours.model_validate(quiet).model_dump(mode="json") if quiet else None
            )
        if not values:
            return await self.store.get_preferences(user.id)
        return await self.store.update_preferences(user.id, values)

    async def list_mutes(self, user: User) -> list[tuple[int, datetime | None]]:
        return await self.store.list_mutes(user.id)

    async def do_mute(self, user: User, conversation_id: int, until: datetime | None) -> None:
        await self.timeline.access_conversation(user, conversation_id)
        if until is not None and until <= datetime.now(UTC):
            raise BadInput("`until` must be in the future (or null: until unmuted)")
        await self.store.set_mute(user.id, conversation_id, until)

    async def do_unmute(self, user: User, conversation_id: int) -> None:
        await self.timeline.access_conversation(user, conversation_id)
        await self.store.delete_mute(user.id, conversation_id)

    # -- Web Push --------------------------------------------------------------------------------

    def vapid_public_key(self) -> str:
        if Channel.PUSH not in self.channels or not self.settings.push_vapid_public_key:
            raise NotFound("Web Push is not configured here (see `parley push keys`)")
        return self.settings.push_vapid_public_key

    def check_endpoint(self, endpoint: str) -> None:
        """Only push services' hosts: anything else would make Parley post where a user says."""
        parts = urlsplit(endpoint)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("https", "http") or not host:
            raise BadInput("endpoint must be the push service URL the browser gave")
        for allowed in self.settings.push_endpoint_hosts:
            allowed = allowed.lower()
            matches = host == allowed or (allowed.startswith("*.") and host.endswith(allowed[1:]))
            if matches and (parts.scheme == "https" or host in ("127.0.0.1", "localhost", "::1")):
                return
        raise InvalidValue(f"{host} is not a known push service (PARLEY_PUSH_ENDPOINT_HOSTS)")

    async def do_subscribe(
        self, user: User, *, endpoint: str, p256dh: str, auth: str, user_agent: str
    ) -> PushSubscription:
        self.vapid_public_key()
        self.check_endpoint(endpoint)
        return await self.store.add_subscription(
            user.id, endpoint=endpoint, p256dh=p256dh, auth=auth, user_agent=user_agent[:300]
        )

    async def list_subscriptions(self, user: User) -> list[PushSubscription]:
        return await self.store.list_subscriptions(user.id)

    async def do_delete_subscription(self, user: User, subscription_id: int) -> None:
        if not await self.store.delete_subscription(subscription_id, user.id):
            raise NotFound("no such push subscription")

    # -- Telegram --------------------------------------------------------------------------------

    async def do_start_telegram_link(self, user: User, chat_id: str) -> None:
        """Send a code to `chat_id`; the link holds once the member types it back (proof that
        the chat is theirs, so nobody can point their notifications at someone else's chat)."""
        if not self.bot.configured:
            raise NotFound("Telegram is not configured here (PARLEY_TELEGRAM_BOT_TOKEN)")
        code = f"{secrets.randbelow(1_000_000):06d}"
        pending = {
            "chat_id": chat_id,
            "code_hash": _hash_code(user.id, code),
            "tries": 0,
            "expires_at": (datetime.now(UTC) + TELEGRAM_CODE_TTL).isoformat(),
        }
        try:
            await self.bot.send_message(
                chat_id, f"Your Parley code: {code}\nType it in Parley to get notifications here."
            )
        except TelegramError as exc:
            if exc.status in (400, 403):
                raise InvalidValue(
                    "Telegram cannot reach that chat: start a chat with the bot first"
                ) from None
            raise Unavailable("Telegram is unreachable; try again shortly") from None
        await self.store.update_preferences(user.id, {"telegram_pending": pending})

    async def do_verify_telegram(self, user: User, code: str) -> Preferences:
        pending = await self.store.get_telegram_pending(user.id)
        if not pending or datetime.fromisoformat(pending["expires_at"]) < datetime.now(UTC):
            raise NotFound("no Telegram link is waiting for a code; start again")
        if pending["tries"] >= TELEGRAM_CODE_TRIES:
            await self.store.update_preferences(user.id, {"telegram_pending": None})
            raise InvalidValue("too many wrong codes; start again")
        if not hmac.compare_digest(pending["code_hash"], _hash_code(user.id, code)):
            pending = {**pending, "tries": pending["tries"] + 1}
            await self.store.update_preferences(user.id, {"telegram_pending": pending})
            raise InvalidValue("that code is not the one sent")
        return await self.store.update_preferences(
            user.id,
            {
                "telegram_chat_id": pending["chat_id"],
                "telegram_pending": None,
                "telegram_enabled": True,
            },
        )

    async def do_unlink_telegram(self, user: User) -> Preferences:
        return await self.store.update_preferences(
            user.id, {"telegram_chat_id": None, "telegram_pending": None}
        )

    async def alert(self, text: str) -> bool:
        """An operational alert to PARLEY_TELEGRAM_ALERT_CHAT_ID; logged, never raised."""
        chat = self.settings.telegram_alert_chat_id
        if not chat or not self.bot.configured:
            return False
        try:
            await self.bot.send_message(chat, text)
        except TelegramError as exc:
            metrics.NOTIFICATION_ATTEMPT_FAILURES.labels("telegram").inc()
            log.warning("Telegram alert failed: %s", exc)
            return False
        metrics.NOTIFICATIONS_SENT.labels("telegram").inc()
        return True

    async def alert_kill(self, actor: str, reason: str) -> None:
        """The release's kill switch went on (by an operator, or the watcher on a P0 breach)."""
        who = "automatically (P0 breach)" if actor == "watcher" else f"by {actor}"
        await self.alert(f"Parley release: kill switch ON {who}.\nReason: {reason[:1000]}")

    # -- signed links ------------------------------------------------------------------------------

    async def signer(self) -> Signer:
        return await self.worker.signer()

    async def do_unsubscribe(self, token: str) -> int:
        """The e-mail link's action (no login): e-mail notifications off for its user."""
        user_id, channel = (await self.signer()).read_unsubscribe(token)
        if channel == Channel.EMAIL.value:
            await self.store.update_preferences(user_id, {"email_enabled": False})
        return user_id

    async def read_resume(self, token: str) -> Resume:
        return (await self.signer()).read_resume(token)


def _hash_code(user_id: int, code: str) -> str:
    return hashlib.sha256(f"{user_id}:{code.strip()}".encode()).hexdigest()
