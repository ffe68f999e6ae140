"""The notification worker: outbox → pending → deliveries → sends, one round at a time.

Runs inside every `parley serve` (PARLEY_NOTIFY_WORKER=in_process, the default) or in separate
`parley worker` processes. Each step is one transaction (see `storage/notify.py`), so a worker
killed at any moment leaves work either done or still to do, never half done; the deduplication
key refuses what a restarted worker does twice. A send is leased before it is made and recorded
after, so a worker that dies mid-send is retried by another once the lease runs out — at most
that one send can be repeated, with the same Message-ID / push Topic, which receivers fold into
one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urldefrag

from parley import metrics
from parley.core.flags import Flag, FlagContext, Stickiness, evaluate
from parley.core.notify import (
    Channel,
    DeliveryStatus,
    Preferences,
    Rules,
    Timing,
    Unread,
    Verdict,
    decide,
    due_at,
    retry_delay,
    subject_for,
)
from parley.features.notify.channels import Outcome, Result, Sender
from parley.features.notify.signing import Resume, Signer
from parley.settings import Settings
from parley.storage.flags import FlagStore
from parley.storage.notify import Delivery, DueBatch, DuePlan, NotifyStore, OutboxItem

log = logging.getLogger(__name__)

NOTIFY_FLAG = "chat_notifications_beta"
DIGEST_ITEMS = 10
SNIPPET_CHARS = 300
Online = Callable[[list[int]], Awaitable[set[int]]]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def flag_allows(flag: Flag | None, recipient_id: int, role: str, internal: bool, cid: int) -> bool:
    """`chat_notifications_beta` for this member in this conversation.

    The contract key is the conversation's id (`str(conversation_id)`): a marketplace contract
    is the buyer/seller conversation, so both sides of a contract are in or out together.
    """
    if flag is None:
        return False
    context = FlagContext(
        user_id=recipient_id,
        role=role,
        internal=internal,
        keys={Stickiness.CONTRACT.value: str(cid), Stickiness.ROOM.value: str(cid)},
    )
    return evaluate(flag, context).value


@dataclass
class RoundResult:
    expanded: int = 0
    decided: int = 0
    sent: int = 0

    @property
    def busy(self) -> bool:
        return bool(self.expanded or self.decided or self.sent)

    def full(self, batch: int) -> bool:
        """A step took as much as one round takes: more is probably waiting."""
        return max(self.expanded, self.decided, self.sent) >= batch


class NotificationWorker:
    def __init__(
        self,
        *,
        settings: Settings,
        store: NotifyStore,
        flags: FlagStore,
        online: Online,
        senders: dict[Channel, Sender],
        rules: Rules | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self.store = store
        self.flags = flags
        self.online = online
        self.senders = senders
        self.rules = rules or Rules()
        self.clock = clock
        self.timing = Timing(
            delay=timedelta(seconds=settings.notify_delay_seconds),
            digest_interval=timedelta(seconds=settings.notify_digest_seconds),
            max_age=timedelta(seconds=settings.notify_max_age_seconds),
        )
        self._signer: Signer | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def signer(self) -> Signer:
        if self._signer is None:
            key = self.settings.secret_key or await self.store.signing_key("notify_signing_key")
            self._signer = Signer(key)
        return self._signer

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="notification-worker")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for sender in self.senders.values():
            with contextlib.suppress(Exception):
                await sender.close()

    async def run(self) -> None:
        """Rounds until cancelled; an idle worker waits `notify_poll_seconds` (or a wake-up).

        A round that took a whole batch goes straight on to the next. One that found some work
        but less waits `notify_gather_seconds` first, so what comes in meanwhile is taken by one
        round: going straight on made a round of queries for every few messages, most of a core
        at a hundred messages a second.
        """
        while True:
            try:
                result = await self.run_once()
            except Exception as exc:  # the database may be restarting: the next round retries
                log.warning("notification round failed: %s", exc)
                result = RoundResult()
            if result.full(self.settings.notify_batch):
                continue
            if result.busy:
                await asyncio.sleep(self.settings.notify_gather_seconds)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.notify_poll_seconds)
            self._wake.clear()

    async def run_once(self) -> RoundResult:
        result = RoundResult()
        result.expanded = await self.expand()
        result.decided = await self.dispatch_due()
        result.sent = await self.send_due()
        return result

    # -- step 1: who might hear of each new message --------------------------------------------

    async def expand(self) -> int:
        flag = await self.flags.get_flag(NOTIFY_FLAG)

        def plan(items: list[OutboxItem]) -> list[dict[str, Any]]:
            rows = []
            for item in items:
                for recipient in item.recipients:
                    if recipient.muted:
                        continue
                    # Live chat is outside the beta: a visitor who left an address is owed the
                    # reply, and an inbox's operators their offline messages.
                    if not item.livechat and not flag_allows(
                        flag,
                        recipient.user_id,
                        recipient.role,
                        recipient.internal,
                        item.conversation_id,
                    ):
                        continue
                    # A mention skips the delays (digest, not-online wait): someone asked for them.
                    urgent = item.mentions_user(recipient.user_id) or self.rules.is_urgent(
                        item.body, item.metadata, recipient.user_id
                    )
                    rows.append(
                        {
                            "user_id": recipient.user_id,
                            "message_id": item.message_id,
                            "conversation_id": item.conversation_id,
                            "seq": item.seq,
                            "created_at": item.created_at,
                            "due_at": due_at(item.created_at, urgent=urgent, timing=self.timing),
                            "urgent": urgent,
                        }
                    )
            return rows

        # With the beta off for everyone, only live chat can notify: the other messages are
        # taken without reading their bodies and members (most of a round's work at load).
        taken, _created, duplicates = await self.store.expand_outbox(
            self.settings.notify_batch, plan, livechat_only=flag is None or not flag.enabled
        )
        if duplicates:
            metrics.NOTIFICATIONS_DEDUPLICATED.labels("pending").inc(duplicates)
        return taken

    # -- step 2: due, still unread → one notification per member and channel -------------------

    async def dispatch_due(self) -> int:
        at = self.clock()
        user_ids = await self.store.list_due_users(at, self.settings.notify_batch)
        if not user_ids:
            return 0
        try:
            online = await self.online(user_ids)
        except Exception as exc:  # presence unknown (Redis down): nobody is online, tell them
            log.warning("presence unavailable for notifications: %s", exc)
            online = set()
        signer = await self.signer()
        plan, refused = await self.store.process_due(
            user_ids, at, lambda batch: self._plan(batch, at, online, signer)
        )
        if refused:
            metrics.NOTIFICATIONS_DEDUPLICATED.labels("delivery").inc(refused)
        if plan.deliveries:
            self.wake()
        return len(plan.done) + len(plan.defer)

    def _plan(self, batch: DueBatch, at: datetime, online: set[int], signer: Signer) -> DuePlan:
        plan = DuePlan()
        for user_id, items in batch.items.items():
            prefs = batch.preferences.get(user_id) or Preferences(user_id=user_id)
            decision = decide(
                items, now=at, online=user_id in online, prefs=prefs, timing=self.timing
            )
            if decision.verdict is Verdict.DEFER and decision.until is not None:
                plan.defer += [(user_id, item.message_id, decision.until) for item in items]
                continue
            plan.done += [(user_id, item.message_id) for item in items]
            if decision.verdict is Verdict.NOTIFY:
                rows = self._deliveries(batch, prefs, decision.items, at, signer)
                if rows:
                    plan.deliveries += rows
                    plan.notified.append(user_id)
        return plan

    def _deliveries(
        self,
        batch: DueBatch,
        prefs: Preferences,
        items: list[Unread],
        at: datetime,
        signer: Signer,
    ) -> list[dict[str, Any]]:
        user_id = prefs.user_id
        payload = self._payload(batch, user_id, items, signer)
        visitor = payload["kind"] == "livechat_reply"
        subject = subject_for(items)
        base = {
            "user_id": user_id,
            "subject": subject,
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": at,
            "created_at": at,
        }
        rows = []
        if Channel.EMAIL in self.senders and prefs.wants(Channel.EMAIL):
            unsubscribe = signer.unsubscribe_token(user_id, Channel.EMAIL.value)
            rows.append(
                {
                    **base,
                    "channel": Channel.EMAIL.value,
                    "target": "",
                    "payload": {
                        **payload,
                        "to": prefs.email,
                        "unsubscribe_url": f"{self._public}/v1/notifications/unsubscribe"
                        f"?token={unsubscribe}",
                    },
                }
            )
        if Channel.PUSH in self.senders and prefs.wants(Channel.PUSH) and not visitor:
            for subscription in batch.subscriptions.get(user_id, []):
                rows.append(
                    {
                        **base,
                        "channel": Channel.PUSH.value,
                        "target": str(subscription.id),
                        "payload": payload,
                    }
                )
        if Channel.TELEGRAM in self.senders and prefs.wants(Channel.TELEGRAM) and not visitor:
            rows.append(
                {
                    **base,
                    "channel": Channel.TELEGRAM.value,
                    "target": "",
                    "payload": {**payload, "chat_id": prefs.telegram_chat_id},
                }
            )
        return rows

    @property
    def _public(self) -> str:
        return self.settings.effective_public_url

    def _payload(
        self, batch: DueBatch, user_id: int, items: list[Unread], signer: Signer
    ) -> dict[str, Any]:
        infos = [batch.messages[i.message_id] for i in items if i.message_id in batch.messages]
        conversations = sorted({i.conversation_id for i in items})
        first = infos[0] if infos else None
        livechat = batch.livechat.get(conversations[0]) if len(conversations) == 1 else None
        shown = [
            {
                "conversation": "" if livechat else info.conversation_title,
                "sender": info.sender_name,
                "body": _snippet(info.body),
            }
            for info in infos[-DIGEST_ITEMS:]
        ]
        count = len(items)
        tag = f"conversation-{conversations[0]}" if len(conversations) == 1 else "digest"
        if livechat is not None and livechat.visitor_id == user_id:
            token = signer.resume_token(
                Resume(
                    visitor_id=user_id,
                    conversation_id=livechat.conversation_id,
                    inbox_id=livechat.inbox_id,
                )
            )
            page = urldefrag(livechat.page_url or "").url or f"{self._public}/"
            return {
                "kind": "livechat_reply",
                "title": f"New reply from {livechat.inbox_name}",
                "text": _push_text(shown, count),
                "items": shown,
                "count": count,
                "url": f"{page}#parley-resume={token}",
                "tag": tag,
                "action": "Reply in the chat",
                "footer": f"You left this address in the chat with {livechat.inbox_name}.",
                "conversation_id": livechat.conversation_id,
            }
        if livechat is not None:
            url = f"{self._public}/console"
        elif len(conversations) == 1:
            url = f"{self._public}/?conversation={conversations[0]}"
        else:
            url = f"{self._public}/"
        if count == 1 and first is not None:
            where = "" if livechat else f" in {first.conversation_title}"
            title = f"New message from {first.sender_name}{where}"
        else:
            spread = (
                f"{len(conversations)} conversations"
                if len(conversations) > 1
                else (f"{first.conversation_title}" if first else "1 conversation")
            )
            title = f"{count} new messages in {spread}"
        return {
            "kind": "message" if count == 1 else "digest",
            "title": title,
            "text": _push_text(shown, count),
            "items": shown,
            "count": count,
            "url": url,
            "tag": tag,
            "action": "Open the conversation" if len(conversations) == 1 else "Open Parley",
            "footer": "You get this because messages to you were unread for a while.",
            "conversation_id": conversations[0],
        }

    # -- step 3: sending -----------------------------------------------------------------------

    async def send_due(self) -> int:
        at = self.clock()
        lease = at + timedelta(seconds=self.settings.notify_lease_seconds)
        claimed, _lost = await self.store.claim_deliveries(
            at,
            self.settings.notify_batch,
            lease_until=lease,
            max_attempts=self.settings.notify_max_attempts,
        )
        if not claimed:
            return 0
        limit = asyncio.Semaphore(self.settings.notify_concurrency)

        async def one(delivery: Delivery) -> None:
            async with limit:
                await self._send(delivery)

        await asyncio.gather(*(one(delivery) for delivery in claimed))
        return len(claimed)

    async def _send(self, delivery: Delivery) -> None:
        channel = delivery.channel
        sender = self.senders.get(Channel(channel))
        if sender is None:
            result = Result(Outcome.FAILED, f"the {channel} channel is not configured")
        else:
            try:
                result = await sender.send(delivery)
            except Exception as exc:  # a sender's bug must not stop the others
                log.exception("sending a %s notification failed unexpectedly", channel)
                result = Result(Outcome.RETRY, f"{type(exc).__name__}")
        at = self.clock()
        if result.outcome is Outcome.SENT:
            await self.store.finish_delivery(delivery.id, DeliveryStatus.SENT, at=at)
            metrics.NOTIFICATIONS_SENT.labels(channel).inc()
            return
        if result.outcome is Outcome.GONE:
            await self.store.finish_delivery(
                delivery.id, DeliveryStatus.EXPIRED, at=at, error=result.error
            )
            return
        metrics.NOTIFICATION_ATTEMPT_FAILURES.labels(channel).inc()
        last = delivery.attempts >= self.settings.notify_max_attempts
        if result.outcome is Outcome.FAILED or last:
            await self.store.finish_delivery(
                delivery.id, DeliveryStatus.DEAD, at=at, error=result.error
            )
            metrics.NOTIFICATIONS_FAILED.labels(channel).inc()
            log.warning(
                "notification dead-lettered",
                extra={"delivery_id": delivery.id, "channel": channel, "error": result.error},
            )
            return
        wait = retry_delay(delivery.attempts, base_seconds=self.settings.notify_retry_base_seconds)
        wait = max(wait, result.retry_after or 0)
        await self.store.finish_delivery(
            delivery.id,
            DeliveryStatus.PENDING,
            at=at,
            error=result.error,
            retry_at=at + timedelta(seconds=wait),
        )


def _snippet(body: str) -> str:
    body = " ".join(body.split())
    return body if len(body) <= SNIPPET_CHARS else body[: SNIPPET_CHARS - 1] + "…"


def _push_text(shown: list[dict[str, str]], count: int) -> str:
    if not shown:
        return f"{count} new messages"
    last = shown[-1]
    text = f"{last['sender']}: {last['body'] or 'sent an attachment'}"[:200]
    return text if count == 1 else f"{text} (+{count - 1} more)"
