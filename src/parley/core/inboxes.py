"""Inboxes and widget sessions as the domain sees them; working hours are decided here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from publicsuffixlist import PublicSuffixList
from pydantic import BaseModel, Field, field_validator


class WorkingHours(BaseModel):
    """When operators answer: on `days` (0 = Monday) from `start` to `end` in `timezone`."""

    timezone: str = "UTC"
    days: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], max_length=7)
    start: time = time(9, 0)
    end: time = time(18, 0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (KeyError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("days")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if any(day < 0 or day > 6 for day in value):
            raise ValueError("days are 0 (Monday) to 6 (Sunday)")
        return sorted(set(value))

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.timezone))
        return local.weekday() in self.days and self.start <= local.time() < self.end


@cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def is_public_suffix(domain: str) -> bool:
    """`com`, `co.uk`, `github.io`: names under which anyone can register a site."""
    return bool(_suffixes().is_public(domain.lower()))


@dataclass(frozen=True, slots=True)
class Inbox:
    id: int
    name: str
    widget_token: str
    allowed_domains: list[str]
    operators: list[str]
    privacy_url: str | None
    privacy_text: str | None
    working_hours: WorkingHours | None
    offline_message: str
    enabled: bool
    identity_secret: str | None
    created_at: datetime
    routing_rules: list[dict[str, Any]] = field(default_factory=list)
    branch_id: int | None = None
    allow_attachments: bool = True
    auto_assign: bool = False
    retention_days: int | None = None
    greeting: str | None = None  # the widget's welcome, above the conversation
    reply_time: str | None = None  # "We usually reply in a few minutes", under it

    def is_online(self, at: datetime) -> bool:
        return self.working_hours is None or self.working_hours.is_open(at)

    def allows_host(self, host: str) -> bool:
        """`example.com` allows exactly that host; `*.example.com` allows its subdomains too.

        A wildcard over a public suffix (`*.com`, stored before such entries were refused)
        allows nothing, and neither does a host with a trailing dot.
        """
        host = host.lower()
        for domain in self.allowed_domains:
            domain = domain.lower()
            if domain.startswith("*."):
                if is_public_suffix(domain[2:]):
                    continue
                if host == domain[2:] or host.endswith(domain[1:]):
                    return True
            elif host == domain:
                return True
        return False


@dataclass(frozen=True, slots=True)
class WidgetSession:
    id: int
    inbox_id: int
    visitor_id: int
    conversation_id: int
    external_id: str | None = None
