"""The per-node membership cache: hits, misses, expiry, its size bound, invalidation, and the
token that keeps a lookup read before an invalidation out of the cache."""

from __future__ import annotations

import json

from parley.core.membercache import MembershipCache
from parley.realtime.envelope import Envelope
from parley.realtime.hub import Hub


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(
    clock: Clock | None = None, *, ttl: float = 10, max_size: int = 100
) -> MembershipCache[str]:
    return MembershipCache(ttl=ttl, max_size=max_size, clock=clock or Clock())


def test_a_put_value_is_a_hit_and_anything_else_a_miss() -> None:
    found = cache()
    found.put(1, 7, "access", token=found.token())

    assert found.get(1, 7) == "access"
    assert found.get(1, 8) is None
    assert found.get(2, 7) is None


def test_an_entry_expires_after_the_ttl() -> None:
    clock = Clock()
    found = cache(clock, ttl=10)
    found.put(1, 7, "access", token=found.token())

    clock.now += 9.9
    assert found.get(1, 7) == "access"
    clock.now += 0.1
    assert found.get(1, 7) is None
    assert len(found) == 0


def test_the_size_is_bounded_and_the_least_recently_used_entry_goes_first() -> None:
    found = cache(max_size=2)
    found.put(1, 7, "a", token=found.token())
    found.put(2, 7, "b", token=found.token())
    assert found.get(1, 7) == "a"  # now (2, 7) is the least recently used

    found.put(3, 7, "c", token=found.token())

    assert len(found) == 2
    assert (found.get(1, 7), found.get(2, 7), found.get(3, 7)) == ("a", None, "c")


def test_invalidating_a_conversation_drops_its_members_only() -> None:
    found = cache()
    for conversation_id, user_id in ((1, 7), (1, 8), (2, 7)):
        found.put(conversation_id, user_id, "access", token=found.token())

    found.invalidate_conversation(1)

    assert (found.get(1, 7), found.get(1, 8), found.get(2, 7)) == (None, None, "access")


def test_clear_drops_everything() -> None:
    found = cache()
    found.put(1, 7, "a", token=found.token())
    found.put(2, 8, "b", token=found.token())

    found.clear()

    assert (found.get(1, 7), found.get(2, 8), len(found)) == (None, None, 0)


def test_a_value_read_before_an_invalidation_is_not_cached() -> None:
    """The lookup started, the member was removed and the cache told, then the lookup's
    (stale) answer came back: caching it would let the removed member send for a whole TTL."""
    found = cache()
    token = found.token()
    found.invalidate_conversation(1)

    found.put(1, 7, "read before the removal", token=token)

    assert found.get(1, 7) is None
    found.put(1, 7, "read after", token=found.token())
    assert found.get(1, 7) == "read after"


def test_a_value_read_before_a_clear_is_not_cached() -> None:
    found = cache()
    token = found.token()
    found.clear()

    found.put(1, 7, "stale", token=token)

    assert found.get(1, 7) is None


def test_a_zero_ttl_or_size_caches_nothing() -> None:
    for off in (cache(ttl=0), cache(max_size=0)):
        off.put(1, 7, "access", token=off.token())
        assert off.get(1, 7) is None
        assert not off.enabled


async def test_the_hub_reports_every_membership_change_it_dispatches() -> None:
    changed: list[int] = []

    async def nothing(_after: int, _upto: int) -> list[Envelope]:
        return []

    hub = Hub(start_pos=0, fetch_range=nothing, on_membership=changed.append)
    update = {"type": "conversation.updated", "conversation_id": 5, "member_ids": [1]}
    hub.ingest(
        [
            Envelope("conversation.updated", json.dumps(update), conversation_ids=(5,)),
            Envelope("typing", "{}", conversation_ids=(6,)),
        ]
    )

    assert changed == [5]
    await hub.close()
