"""Safety loops say when they break; clock skew is tolerated up to the setting and no further;
a slow subscription's memory stays at its limit."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from prometheus_client import REGISTRY

from parley.background import LoopHealth
from parley.core.errors import Unauthenticated
from parley.features.widget.identity import hmac_token, verify_identity
from parley.realtime.envelope import Envelope
from parley.realtime.hub import Hub

SECRET = "s" * 32


def _errors(loop: str) -> float:
    return REGISTRY.get_sample_value("parley_background_errors_total", {"loop": loop}) or 0.0


def test_each_failure_counts_and_its_traceback_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = LoopHealth("release_watcher")
    before = _errors("release_watcher")
    caplog.set_level(logging.INFO)

    for _ in range(3):
        health.failed(RuntimeError("database restarting"), "tick")
    health.failed(ValueError("another cause"), "tick")
    health.succeeded()

    assert _errors("release_watcher") == before + 4
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert [str(r.exc_info[1]) for r in tracebacks] == ["database restarting", "another cause"]
    assert sum("failed again" in r.getMessage() for r in caplog.records) == 2
    assert "recovered after 4 failures" in caplog.records[-1].getMessage()


async def test_a_hub_whose_gap_fill_fails_counts_each_failure_and_keeps_trying() -> None:
    calls = 0

    async def flaky(after: int, upto: int) -> list[Envelope]:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("database away")
        return [
            Envelope("message", json.dumps({"pos": p}), pos=p, conversation_ids=(1,))
            for p in range(after + 1, upto + 1)
        ]

    before = _errors("hub_gap_fill")
    hub = Hub(start_pos=0, fetch_range=flaky, gap_wait=0.01)
    sub = hub.subscribe(user_id=1, conversation_ids=[1])
    hub.notice_head(2)
    async with asyncio.timeout(10):
        got = await sub.wait()
    await hub.close()

    assert [e.pos for e in got] == [1, 2]
    assert _errors("hub_gap_fill") == before + 2


def test_a_slow_subscription_holds_at_most_its_limit_and_hands_out_bounded_slices() -> None:
    hub = Hub(start_pos=0, fetch_range=_never, queue_limit=50)
    sub = hub.subscribe(user_id=1, conversation_ids=[1])
    for pos in range(1, 41):
        hub.ingest([Envelope("message", "{}", pos=pos, conversation_ids=(1,))])
    assert sub.backlog == 40

    first = asyncio.run(sub.wait(most=16))
    assert [e.pos for e in first] == list(range(1, 17))
    for pos in range(41, 200):
        hub.ingest([Envelope("message", "{}", pos=pos, conversation_ids=(1,))])
    assert sub.overflowed and sub.backlog == 0  # cut loose: it resumes from its cursor


async def _never(after: int, upto: int) -> list[Envelope]:
    return []


# -- clock skew ----------------------------------------------------------------------------------

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _expiring(seconds: float) -> int:
    return int((NOW + timedelta(seconds=seconds)).timestamp())


@pytest.mark.parametrize("fmt", ["hmac", "jwt"])
def test_an_identity_token_expired_within_the_skew_passes_and_beyond_it_is_refused(
    fmt: str,
) -> None:
    def token(expires: int) -> str:
        if fmt == "hmac":
            return hmac_token(SECRET, "user-1", expires, "nonce-123456")
        return jwt.encode({"sub": "user-1", "exp": expires, "jti": "nonce-123456"}, SECRET)

    # The site's clock runs 30 s behind ours: its fresh token looks 30 s expired here.
    late = token(_expiring(-30))
    assert verify_identity(late, SECRET, now=NOW, skew=60).external_id == "user-1"
    with pytest.raises(Unauthenticated, match="expired"):
        verify_identity(late, SECRET, now=NOW, skew=0)
    with pytest.raises(Unauthenticated, match="expired"):
        verify_identity(token(_expiring(-120)), SECRET, now=NOW, skew=60)
    # A lifetime past the cap is tolerated by the skew, and no more.
    assert verify_identity(token(_expiring(24 * 3600 + 30)), SECRET, now=NOW, skew=60)
    with pytest.raises(Unauthenticated, match="more than"):
        verify_identity(token(_expiring(24 * 3600 + 120)), SECRET, now=NOW, skew=60)


def test_an_accepted_late_token_keeps_its_nonce_until_no_node_could_accept_it() -> None:
    verified = verify_identity(
        hmac_token(SECRET, "user-1", _expiring(-30), "nonce-abcdefgh"), SECRET, now=NOW, skew=60
    )
    assert verified.expires_at == NOW + timedelta(seconds=30)
