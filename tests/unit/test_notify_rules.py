"""The notification rules (core/notify.py) and the beta flag's contract bucketing."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given
from hypothesis import strategies as st

from parley.core.flags import Flag, Stickiness
from parley.core.notify import (
    Preferences,
    QuietHours,
    Timing,
    Unread,
    Verdict,
    decide,
    retry_delay,
    subject_for,
)
from parley.features.notify.worker import NOTIFY_FLAG, flag_allows

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TIMING = Timing(
    delay=timedelta(seconds=60), digest_interval=timedelta(minutes=5), max_age=timedelta(days=1)
)


def unread(message_id: int, *, age: float = 120, urgent: bool = False) -> Unread:
    created = NOW - timedelta(seconds=age)
    return Unread(1, message_id, 7, message_id, created, created + TIMING.delay, urgent)


def test_an_offline_member_is_notified_of_everything_due_at_once() -> None:
    decision = decide(
        [unread(3), unread(1), unread(2)],
        now=NOW,
        online=False,
        prefs=Preferences(1),
        timing=TIMING,
    )
    assert decision.verdict is Verdict.NOTIFY
    assert [i.message_id for i in decision.items] == [1, 2, 3]
    assert subject_for(decision.items) == "digest:1"
    assert subject_for(decision.items[:1]) == "message:1"


def test_an_online_member_is_looked_at_again_one_delay_later_unless_urgent() -> None:
    later = decide([unread(1)], now=NOW, online=True, prefs=Preferences(1), timing=TIMING)
    assert (later.verdict, later.until) == (Verdict.DEFER, NOW + TIMING.delay)
    urgent = decide(
        [unread(1, urgent=True)], now=NOW, online=True, prefs=Preferences(1), timing=TIMING
    )
    assert urgent.verdict is Verdict.NOTIFY


def test_a_member_notified_recently_waits_out_the_digest_interval() -> None:
    prefs = Preferences(1, last_notified_at=NOW - timedelta(minutes=1))
    decision = decide([unread(1)], now=NOW, online=False, prefs=prefs, timing=TIMING)
    assert (decision.verdict, decision.until) == (Verdict.DEFER, NOW + timedelta(minutes=4))


def test_messages_too_old_are_dropped() -> None:
    decision = decide(
        [unread(1, age=2 * 86400)], now=NOW, online=False, prefs=Preferences(1), timing=TIMING
    )
    assert decision.verdict is Verdict.DROP


def test_quiet_hours_across_midnight_hold_until_they_end() -> None:
    quiet = QuietHours(timezone="Europe/Moscow", start=time(22), end=time(8))
    night = datetime(2026, 12, 1, 20, 30, tzinfo=UTC)  # 23:30 in Moscow
    assert quiet.is_quiet(night)
    assert quiet.ends_after(night) == datetime(2026, 12, 2, 5, 0, tzinfo=UTC)  # 08:00 Moscow
    assert not quiet.is_quiet(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    prefs = Preferences(1, quiet_hours=quiet)
    decision = decide([unread(1, urgent=True)], now=night, online=False, prefs=prefs, timing=TIMING)
    assert decision.verdict is Verdict.DEFER


@given(st.integers(min_value=1, max_value=12))
def test_backoff_grows_and_stays_within_its_cap(attempts: int) -> None:
    wait = retry_delay(attempts, base_seconds=5, cap_seconds=3600)
    ceiling = min(3600, 5 * 2 ** (attempts - 1))
    assert ceiling / 2 <= wait <= ceiling


def test_the_beta_flag_at_5_percent_takes_about_5_percent_of_contracts_stickily() -> None:
    flag = Flag(NOTIFY_FLAG, enabled=True, percentage=5, stickiness=Stickiness.CONTRACT)
    inside = [cid for cid in range(1, 20_001) if flag_allows(flag, 1, "member", False, cid)]
    assert 0.045 < len(inside) / 20_000 < 0.055
    # The same contract gives the same answer to both of its members, every time.
    assert all(flag_allows(flag, 2, "member", False, cid) for cid in inside[:200])
    wider = flag.with_changes(percentage=10)
    assert all(flag_allows(wider, 1, "member", False, cid) for cid in inside)
    assert not flag_allows(flag.with_changes(enabled=False), 1, "member", False, inside[0])
    assert not flag_allows(None, 1, "member", False, inside[0])
