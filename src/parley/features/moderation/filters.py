"""The filter pipeline every send passes before it is stored (`Timeline.guard`).

In order: the sender's sanctions (banned or muted here or everywhere), the content rules (words,
regex, links, attachments — compiled, in-process), the rate/flood rules (a `limits` moving
window, Redis-backed when Parley runs on Redis, so every node counts together), then the
external classifier, asked only while nothing else objected. The most severe verdict wins:
`reject` answers 422 ERR_MESSAGE_REJECTED (a flood rule 429 ERR_RATE_LIMITED), `hold_for_review`
puts the send in the moderation queue and answers 409 ERR_HELD_FOR_REVIEW.

The hot path stays cheap: rules and sanctions are cached per node and reloaded only when the
stored revision moves (checked every PARLEY_MODERATION_REFRESH_SECONDS by one background query,
and at once after a change made on this node). A send with no sanction and no rule in scope
costs two dictionary lookups and no query.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from limits import RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter

from parley import metrics
from parley.core.errors import BadInput, ErrorCode, Forbidden, Held, RateLimited, Unavailable
from parley.core.models import Conversation, Message, NewMessage, User
from parley.core.moderation import (
    Finding,
    ItemStatus,
    Resolution,
    Rule,
    RuleBook,
    RuleKind,
    Sanction,
    SanctionKind,
    Verdict,
)
from parley.features.moderation.classifier import Classifier, ClassifierFailed, ClassifierRequest
from parley.storage.moderation import ModerationStore

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_INBOX_CACHE_SIZE = 50_000


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


@dataclass(frozen=True, slots=True)
class Policy:
    """One node's cached copy of the rules and the mutes and bans in force."""

    revision: int = -1
    book: RuleBook = field(default_factory=RuleBook)
    sanctions: dict[int, tuple[Sanction, ...]] = field(default_factory=dict)


def sanction_in_force(
    sanctions: tuple[Sanction, ...], conversation_id: int | None, now: datetime
) -> Sanction | None:
    """The ban (first) or mute that stops a send into `conversation_id`, if any."""
    found = [s for s in sanctions if s.active(now) and s.covers(conversation_id)]
    found.sort(key=lambda s: (s.kind is not SanctionKind.BAN, s.conversation_id is not None))
    return found[0] if found else None


def refusal_for(sanction: Sanction) -> Forbidden:
    where = "anywhere" if sanction.conversation_id is None else "in this conversation"
    until = f" until {iso(sanction.expires_at)}" if sanction.expires_at else ""
    why = f" ({sanction.reason})" if sanction.reason else ""
    if sanction.kind is SanctionKind.BAN:
        code, verb = ErrorCode.BANNED, "banned"
    else:
        code, verb = ErrorCode.MUTED, "muted"
    return Forbidden(
        f"you are {verb} {where}{until}{why}",
        code,
        details={
            "expires_at": iso(sanction.expires_at),
            "conversation_id": sanction.conversation_id,
        },
    )


class ModerationGuard:
    def __init__(
        self,
        *,
        store: ModerationStore,
        limiter_storage: Storage,
        classifier: Classifier | None,
        refresh_seconds: float,
        clock: Clock = utc_now,
    ) -> None:
        self.store = store
        self.classifier = classifier
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self.policy = Policy()
        self._limiter = MovingWindowRateLimiter(limiter_storage)
        self._inboxes: OrderedDict[int, int | None] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        # Set by the moderation service: tell moderators live that the queue grew.
        self.on_held: Callable[[int], Awaitable[None]] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.refresh(force=True)
        except Unavailable as exc:
            # Serve anyway (readyz tells); the loop loads the rules as soon as it can.
            log.warning("moderation rules not loaded at start: %s", exc)
        self._task = asyncio.create_task(self._run(), name="moderation-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.classifier is not None:
            await self.classifier.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except Exception as exc:  # the database may be restarting; next tick retries
                log.warning("reloading moderation rules failed: %s", exc)

    async def refresh(self, *, force: bool = False) -> None:
        """Reload rules and sanctions if their revision moved (always with `force`)."""
        if not force and await self.store.get_revision() == self.policy.revision:
            return
        async with self._reload_lock:
            revision, rules, sanctions = await self.store.load_policy(self.clock())
            by_user: dict[int, list[Sanction]] = {}
            for sanction in sanctions:
                by_user.setdefault(sanction.user_id, []).append(sanction)
            self.policy = Policy(
                revision=revision,
                book=RuleBook.compile(rules),
                sanctions={uid: tuple(found) for uid, found in by_user.items()},
            )

    # -- checks ----------------------------------------------------------------------------------

    def check_may_connect(self, user: User) -> None:
        """A deployment-wide ban also closes the stream: no events while banned."""
        sanction = sanction_in_force(self.policy.sanctions.get(user.id, ()), None, self.clock())
        if sanction is not None and sanction.kind is SanctionKind.BAN:
            raise refusal_for(sanction)

    def check_may_join(self, conversation_id: int, user_ids: list[int]) -> None:
        """Users banned from a conversation may not be added back while the ban lasts."""
        now = self.clock()
        for user_id in user_ids:
            for sanction in self.policy.sanctions.get(user_id, ()):
                if (
                    sanction.kind is SanctionKind.BAN
                    and sanction.active(now)
                    and sanction.covers(conversation_id)
                ):
                    raise Forbidden(
                        f"user {user_id} is banned from this conversation", ErrorCode.BANNED
                    )

    async def screen_send(
        self, actor: User, conversation: Conversation, send: NewMessage
    ) -> Message | None:
        """None: store the send. Raises when it is refused or held.

        Returns the message already stored for this `client_msg_id` when a retry of a send
        that went through earlier would now be refused: a retry never changes the answer.
        """
        policy = self.policy
        sanctions = policy.sanctions.get(actor.id)
        if sanctions:
            sanction = sanction_in_force(sanctions, conversation.id, self.clock())
            if sanction is not None:
                metrics.MODERATION_VERDICTS.labels("reject", sanction.kind.value).inc()
                stored = await self._already_stored(send)
                if stored is not None:
                    return stored
                raise refusal_for(sanction)
        if policy.book.empty:
            return None
        finding = await self._judge(policy.book, conversation, send)
        if finding is None:
            return None
        metrics.MODERATION_VERDICTS.labels(finding.verdict.label, finding.kind).inc()
        stored = await self._already_stored(send)
        if stored is not None:
            return stored
        if finding.verdict is Verdict.REJECT:
            raise BadInput(
                f"message refused: {finding.reason}",
                ErrorCode.MESSAGE_REJECTED,
                details={"rule": finding.kind},
            )
        return await self._hold(send, finding)

    async def _judge(
        self, book: RuleBook, conversation: Conversation, send: NewMessage
    ) -> Finding | None:
        kind = conversation.kind.value
        inbox_id = await self._inbox_of(conversation.id) if book.needs_inbox else None
        worst = book.content_finding(
            send.body, send.attachments, conversation_kind=kind, inbox_id=inbox_id
        )
        if (worst is not None and worst.verdict is Verdict.REJECT) or not book.has_stateful:
            return worst
        rules = book.applicable(kind, inbox_id)
        for rule in rules:
            if rule.kind is RuleKind.FLOOD and (worst is None or rule.verdict > worst.verdict):
                worst = await self._flood(rule, send) or worst
        if worst is None:
            for rule in rules:
                if rule.kind is RuleKind.CLASSIFIER:
                    worst = _worse(worst, await self._classify(rule, conversation, send))
        return worst

    async def _inbox_of(self, conversation_id: int) -> int | None:
        """A conversation's inbox never changes: looked up once per node, then remembered."""
        if conversation_id in self._inboxes:
            self._inboxes.move_to_end(conversation_id)
            return self._inboxes[conversation_id]
        inbox_id = await self.store.get_conversation_inbox(conversation_id)
        self._inboxes[conversation_id] = inbox_id
        if len(self._inboxes) > _INBOX_CACHE_SIZE:
            self._inboxes.popitem(last=False)
        return inbox_id

    async def _flood(self, rule: Rule, send: NewMessage) -> Finding | None:
        config = rule.config
        who = (str(rule.id), str(send.sender_id), str(send.conversation_id))
        checks = []
        if config.get("max_messages"):
            item = RateLimitItemPerSecond(config["max_messages"], config["per_seconds"])
            checks.append((item, ("flood", *who), "too many messages; slow down"))
        if config.get("max_repeats"):
            text = " ".join(send.body.casefold().split())
            digest = hashlib.sha256(text.encode()).hexdigest()[:32]
            item = RateLimitItemPerSecond(config["max_repeats"], config["per_seconds"])
            checks.append((item, ("repeat", *who, digest), "the same message too many times"))
        for item, key, reason in checks:
            try:
                allowed = await self._limiter.hit(item, *key)
            except Exception as exc:  # the shared limiter's store (Redis) is down: let it pass
                log.warning("flood rule %s skipped, its counter is unavailable: %s", rule.name, exc)
                return None
            if allowed:
                continue
            if rule.verdict is Verdict.REJECT:
                stats = await self._limiter.get_window_stats(item, *key)
                metrics.MODERATION_VERDICTS.labels("reject", "flood").inc()
                raise RateLimited(
                    f"message refused: {reason}",
                    ErrorCode.RATE_LIMITED,
                    retry_after=max(1.0, stats.reset_time - time.time()),
                )
            return Finding(rule.verdict, rule.id, rule.name, rule.kind.value, reason)
        return None

    async def _classify(
        self, rule: Rule, conversation: Conversation, send: NewMessage
    ) -> Finding | None:
        config = rule.config
        if self.classifier is None:
            score = None
        else:
            started = time.perf_counter()
            try:
                answer = await self.classifier.classify(
                    ClassifierRequest(
                        text=send.body,
                        conversation_id=conversation.id,
                        conversation_kind=conversation.kind.value,
                        sender_id=send.sender_id,
                        attachments=list(send.attachments),
                    )
                )
                score = answer.score
            except ClassifierFailed as exc:
                log.warning("classifier failed for rule %s: %s", rule.name, exc)
                metrics.MODERATION_CLASSIFIER_FAILURES.inc()
                score = None
            finally:
                metrics.MODERATION_CLASSIFIER_SECONDS.observe(time.perf_counter() - started)
        if score is None:
            if config["on_error"] == "hold_for_review":
                reason = "the message could not be checked automatically"
                return Finding(Verdict.HOLD_FOR_REVIEW, rule.id, rule.name, "classifier", reason)
            return None
        if config["reject_at"] is not None and score >= config["reject_at"]:
            verdict = Verdict.REJECT
        elif config["hold_at"] is not None and score >= config["hold_at"]:
            verdict = Verdict.HOLD_FOR_REVIEW
        else:
            return None
        return Finding(verdict, rule.id, rule.name, "classifier", "the message looks unsafe")

    async def _already_stored(self, send: NewMessage) -> Message | None:
        return await self.store.find_sent(send.idempotency_key)

    async def _hold(self, send: NewMessage, finding: Finding) -> Message | None:
        item, created = await self.store.hold_send(
            send, rule=finding.rule_name, reason=finding.reason
        )
        if created and self.on_held is not None:
            await self.on_held(item.id)
        if item.status is ItemStatus.RESOLVED:
            if item.resolution is Resolution.APPROVED:
                return None  # approved meanwhile: the writer answers with the stored message
            raise BadInput("message refused: a moderator removed it", ErrorCode.MESSAGE_REJECTED)
        raise Held(
            f"your message is waiting for a moderator's review: {finding.reason}",
            details={"held_id": item.id, "rule": finding.kind},
        )


def _worse(current: Finding | None, new: Finding | None) -> Finding | None:
    if new is None:
        return current
    if current is None or new.verdict > current.verdict:
        return new
    return current
