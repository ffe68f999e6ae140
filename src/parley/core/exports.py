"""Export jobs: a conversation's package, or everything about one person, built in the background.

queued ──claim──▶ running ──▶ done
                     │  └────▶ failed
                     └─(runner went quiet)─▶ re-claimed by another runner
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class ExportKind(StrEnum):
    CONVERSATION = "conversation"
    PERSON = "person"


class ExportStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ExportJob:
    id: str
    kind: ExportKind
    subject_id: int
    requested_by: int | None
    requested_by_name: str
    status: ExportStatus
    done: int
    total: int
    size: int | None
    sha256: str | None
    error: str | None
    params: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None
    expires_at: datetime | None

    @property
    def file_name(self) -> str:
        stamp = self.created_at.strftime("%Y%m%dT%H%M%SZ")
        return f"parley-{self.kind.value}-{self.subject_id}-{stamp}.zip"
