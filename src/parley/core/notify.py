"""Notifications as the domain sees them: channels, preferences, quiet hours, and the rules.

Pure: no I/O. The worker (`features/notify/worker.py`) asks these functions when a member's
unread messages are due, whether they are muted, quiet or urgent, what one notification about
them is called (its deduplication subject), and how long to wait before retrying a send.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import BaseModel, field_validator


class Channel(StrEnum):
    EMAIL = "email"
    PUSH = "push"
    TELEGRAM = "telegram"


class DeliveryStatus(StrEnum):
    """A delivery's life: pending → sending → sent, or back to pending (retry), or dead.

    `expired`: the address is gone for good (a push subscription the browser dropped, a
    Telegram chat that blocked the bot) — not a drop, nobody is there to receive it.
    """

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"
    EXPIRED = "expired"


class QuietHours(BaseModel):
    """No notifications from `start` to `end` (local time in `timezone`); may cross midnight."""

    timezone: str = "UTC"
    start: time = time(22, 0)
    end: time = time(8, 0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (KeyError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def is_quiet(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.timezone)).time()
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def ends_after(self, at: datetime) -> datetime:
        """The first moment after `at` outside the quiet hours (`at` itself if not quiet)."""
        if not self.is_quiet(at):
            return at
        zone = ZoneInfo(self.timezone)
        local = at.astimezone(zone)
        end = datetime.combine(local.date(), self.end, tzinfo=zone)
        if end <= local:
            end += timedelta(days=1)
        return end


@dataclass(frozen=True, slots=True)
class Preferences:
    """One user's notification settings (defaults: every channel on, no quiet hours)."""

    user_id: int
    email: str | None = None
    email_enabled: bool = True
    push_enabled: bool = True
    telegram_enabled: bool = True
    telegram_chat_id: str | None = None
    quiet_hours: QuietHours | None = None
    last_notified_at: datetime | None = None

    def wants(self, channel: Channel) -> bool:
        if channel is Channel.EMAIL:
            return self.email_enabled and bool(self.email)
        if channel is Channel.PUSH:
            return self.push_enabled
        return self.telegram_enabled and bool(self.telegram_chat_id)


@dataclass(frozen=True, slots=True)
class Unread:
    """A message waiting to be notified to one member (a row of the pending queue)."""

    user_id: int
    message_id: int
    conversation_id: int
    seq: int
    created_at: datetime
    due_at: datetime
    urgent: bool = False


@dataclass(frozen=True, slots=True)
class Timing:
    """`PARLEY_NOTIFY_*` timings: how long a message may stay unread, how often to notify."""

    delay: timedelta
    digest_interval: timedelta
    max_age: timedelta


def due_at(created_at: datetime, *, urgent: bool, timing: Timing) -> datetime:
    """When a new message becomes worth a notification if still unread (urgent: at once)."""
    return created_at if urgent else created_at + timing.delay


class Verdict(StrEnum):
    NOTIFY = "notify"
    DEFER = "defer"  # look again at `until`
    DROP = "drop"  # read, gone or too old: nothing to send


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    items: list[Unread] = field(default_factory=list)
    until: datetime | None = None


def decide(
    items: Sequence[Unread],
    *,
    now: datetime,
    online: bool,
    prefs: Preferences,
    timing: Timing,
) -> Decision:
    """What to do with a member's due, still unread messages (already filtered for reads).

    Online members are looked at again later (they are likely reading), unless a message is
    urgent; quiet hours hold everything until they end; a member notified recently waits out
    the digest interval, so a burst of messages becomes one notification.
    """
    fresh = [item for item in items if now - item.created_at <= timing.max_age]
    if not fresh:
        return Decision(Verdict.DROP)
    urgent = any(item.urgent for item in fresh)
    if prefs.quiet_hours is not None and prefs.quiet_hours.is_quiet(now):
        return Decision(Verdict.DEFER, until=prefs.quiet_hours.ends_after(now))
    if online and not urgent:
        return Decision(Verdict.DEFER, until=now + timing.delay)
    if prefs.last_notified_at is not None and not urgent:
        next_allowed = prefs.last_notified_at + timing.digest_interval
        if next_allowed > now:
            return Decision(Verdict.DEFER, until=next_allowed)
    return Decision(Verdict.NOTIFY, items=sorted(fresh, key=lambda i: i.message_id))


def subject_for(items: Sequence[Unread]) -> str:
    """The deduplication subject of one notification: its message, or the digest's first one.

    Deterministic for the same set of messages, so a worker that crashed before committing and
    does the work again produces the same key, which the unique constraint then refuses twice.
    """
    first = min(item.message_id for item in items)
    return f"message:{first}" if len(items) == 1 else f"digest:{first}"


def retry_delay(attempts: int, *, base_seconds: float, cap_seconds: float = 3600) -> float:
    """Exponential backoff with full jitter after `attempts` failed tries (1, 2, ...)."""
    ceiling = min(cap_seconds, base_seconds * 2 ** max(0, attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


# -- rules another feature can add -------------------------------------------------------------

# Given a message's body and metadata and a recipient's id, whether that recipient must hear
# of it at once (no "not online for N seconds" wait, no digest interval). Mentions (issue 17)
# register one here; quiet hours and mutes still apply.
UrgencyRule = Callable[[str, dict[str, object], int], bool]


@dataclass
class Rules:
    urgent: list[UrgencyRule] = field(default_factory=list)

    def is_urgent(self, body: str, metadata: dict[str, object], user_id: int) -> bool:
        return any(rule(body, metadata, user_id) for rule in self.urgent)
