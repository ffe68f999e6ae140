"""Inbox rules that need no database: working hours and the domain allowlist."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from parley.core.inboxes import Inbox, WorkingHours


def inbox(*domains: str) -> Inbox:
    return Inbox(
        id=1,
        name="Shop",
        widget_token="wt_x",
        allowed_domains=list(domains),
        operators=[],
        privacy_url=None,
        privacy_text=None,
        working_hours=None,
        offline_message="",
        enabled=True,
        identity_secret=None,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_working_hours_are_read_in_the_inbox_time_zone() -> None:
    hours = WorkingHours(timezone="Europe/Moscow", days=[0], start=time(9), end=time(18))
    monday_0830_utc = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)  # 11:30 in Moscow
    monday_1600_utc = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 19:00 in Moscow

    assert hours.is_open(monday_0830_utc)
    assert not hours.is_open(monday_1600_utc)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        WorkingHours(timezone="Mars/Olympus")


def test_domain_allows_only_that_host_unless_wildcarded() -> None:
    exact, wild = inbox("example.com"), inbox("*.example.com")

    assert exact.allows_host("example.com") and not exact.allows_host("www.example.com")
    assert wild.allows_host("www.example.com") and wild.allows_host("example.com")
    assert not wild.allows_host("evilexample.com")
    assert not exact.allows_host("example.com.evil.net")
