"""Privacy's vocabulary: legal holds, what retention would purge, how erasure treats messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

RETENTION_KINDS = ("direct", "group", "room", "livechat")


class ErasurePolicy(StrEnum):
    """What happens to an erased person's messages; their identity goes either way.

    TOMBSTONE: each message becomes a tombstone (body and files gone, seq kept).
    ANONYMIZE: the text stays for the other members, attributed to "Deleted user"; files go.
    """

    TOMBSTONE = "tombstone"
    ANONYMIZE = "anonymize"


@dataclass(frozen=True, slots=True)
class LegalHold:
    id: int
    conversation_id: int
    reason: str
    placed_by: str
    placed_at: datetime
    released_at: datetime | None = None
    released_by: str | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None


@dataclass(frozen=True, slots=True)
class RetentionTarget:
    """One conversation's messages older than its retention period (`days`)."""

    conversation_id: int
    kind: str
    days: int
    message_ids: list[int]


@dataclass
class RetentionRun:
    at: datetime
    dry_run: bool
    purged: int = 0  # messages made tombstones (or that would be, on a dry run)
    conversations: int = 0
    held: list[int] = field(default_factory=list)  # conversations skipped for a legal hold


@dataclass(frozen=True, slots=True)
class Erasure:
    user_id: int
    policy: ErasurePolicy
    messages: int
    attachments: int
    sessions: int
