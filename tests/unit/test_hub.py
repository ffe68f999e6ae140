"""The hub delivers message events in position order, fills gaps, and isolates slow consumers."""

from __future__ import annotations

import asyncio
import json

from parley.realtime.envelope import Envelope
from parley.realtime.hub import Hub


def message(pos: int, cid: int = 1) -> Envelope:
    return Envelope("message", json.dumps({"pos": pos}), pos=pos, conversation_ids=(cid,))


def positions(envelopes: list[Envelope]) -> list[int | None]:
    return [e.pos for e in envelopes]


class Database:
    """Stands in for the message table: positions it has, and which ranges were asked for."""

    def __init__(self, stored: list[int]) -> None:
        self.stored = stored
        self.asked: list[tuple[int, int]] = []

    async def fetch(self, after: int, upto: int) -> list[Envelope]:
        self.asked.append((after, upto))
        return [message(p) for p in self.stored if after < p <= upto]


async def test_events_arriving_out_of_order_are_delivered_in_order() -> None:
    hub = Hub(start_pos=0, fetch_range=Database([]).fetch, gap_wait=5)
    sub = hub.subscribe(user_id=7, conversation_ids=[1])

    hub.ingest([message(2), message(3)])
    before_gap_closes = await sub.wait(timeout=0)
    hub.ingest([message(1)])

    assert before_gap_closes == []
    assert positions(await sub.wait(timeout=1)) == [1, 2, 3]
    await hub.close()


async def test_repeats_are_dropped() -> None:
    hub = Hub(start_pos=0, fetch_range=Database([]).fetch)
    sub = hub.subscribe(user_id=7, conversation_ids=[1])

    hub.ingest([message(1), message(1)])
    hub.ingest([message(1), message(2)])

    assert positions(await sub.wait(timeout=1)) == [1, 2]
    await hub.close()


async def test_a_lost_position_is_fetched_from_the_database() -> None:
    database = Database(stored=[1, 2, 3])
    hub = Hub(start_pos=0, fetch_range=database.fetch, gap_wait=0.01)
    sub = hub.subscribe(user_id=7, conversation_ids=[1])

    hub.ingest([message(3)])  # 1 and 2 were lost on the bus
    got: list[Envelope] = []
    while len(got) < 3:
        got += await sub.wait(timeout=2)

    assert positions(got) == [1, 2, 3]
    assert database.asked[0] == (0, 2)
    await hub.close()


async def test_the_head_moving_without_any_publish_is_caught_up() -> None:
    database = Database(stored=[1, 2])
    hub = Hub(start_pos=0, fetch_range=database.fetch, gap_wait=0.01)
    sub = hub.subscribe(user_id=7, conversation_ids=[1])

    hub.notice_head(2)
    got: list[Envelope] = []
    while len(got) < 2:
        got += await sub.wait(timeout=2)

    assert positions(got) == [1, 2]
    await hub.close()


async def test_only_members_of_the_conversation_get_its_events() -> None:
    hub = Hub(start_pos=0, fetch_range=Database([]).fetch)
    member = hub.subscribe(user_id=1, conversation_ids=[1])
    outsider = hub.subscribe(user_id=2, conversation_ids=[2])

    hub.ingest([message(1, cid=1)])

    assert positions(await member.wait(timeout=1)) == [1]
    assert await outsider.wait(timeout=0) == []
    await hub.close()


async def test_a_slow_consumer_overflows_alone() -> None:
    hub = Hub(start_pos=0, fetch_range=Database([]).fetch, queue_limit=3)
    slow = hub.subscribe(user_id=1, conversation_ids=[1])
    fast = hub.subscribe(user_id=2, conversation_ids=[1])

    for pos in range(1, 6):
        hub.ingest([message(pos)])
        if pos % 2:
            assert await fast.wait(timeout=1)

    assert slow.overflowed and not fast.overflowed
    await hub.close()


async def test_membership_changes_add_and_remove_conversations() -> None:
    hub = Hub(start_pos=0, fetch_range=Database([]).fetch)
    joiner = hub.subscribe(user_id=1, conversation_ids=[])
    leaver = hub.subscribe(user_id=2, conversation_ids=[9])
    update = Envelope(
        "conversation.updated",
        json.dumps({"conversation_id": 9, "member_ids": [1], "removed_ids": [2]}),
        conversation_ids=(9,),
        user_ids=(1, 2),
    )

    hub.ingest([update])
    hub.ingest([message(1, cid=9)])

    assert [e.type for e in await joiner.wait(timeout=1)] == ["conversation.updated", "message"]
    assert [e.type for e in await leaver.wait(timeout=1)] == ["conversation.updated"]
    await hub.close()


async def test_a_subscription_forgets_what_it_queued_for_a_conversation_its_user_left() -> None:
    """A parked long poll's queue, taken after its user was removed, holds what a fresh open
    would read: nothing more of the conversation left, the rest (and the removal) kept."""
    hub = Hub(start_pos=0, fetch_range=Database([]).fetch)
    sub = hub.subscribe(user_id=2, conversation_ids=[9, 10])
    removal = Envelope(
        "conversation.updated",
        json.dumps({"conversation_id": 9, "member_ids": [1], "removed_ids": [2]}),
        conversation_ids=(9,),
        user_ids=(1, 2),
    )
    notice = Envelope("control", '{"op":"reconnect"}', broadcast=True)
    for batch in ([message(1, cid=9)], [message(2, cid=10)], [notice], [removal]):
        hub.ingest(batch)
    hub.ingest([message(3, cid=9)])

    assert sub.any_queued(lambda e: e.type == "control")
    assert not sub.any_queued(lambda e: e.pos == 3)  # after the removal: never queued
    sub.forget_left()
    assert [(e.type, e.pos) for e in sub.take()] == [
        ("message", 2),
        ("control", None),
        ("conversation.updated", None),
    ]
    await hub.close()


async def test_a_subscription_starts_after_the_hubs_position() -> None:
    hub = Hub(start_pos=0, fetch_range=Database([]).fetch)
    hub.ingest([message(1)])
    late = hub.subscribe(user_id=1, conversation_ids=[1])

    hub.ingest([message(2)])

    assert late.min_pos == 1
    assert positions(await late.wait(timeout=1)) == [2]
    await hub.close()


async def test_waiting_returns_empty_after_the_timeout() -> None:
    hub = Hub(start_pos=0, fetch_range=Database([]).fetch)
    sub = hub.subscribe(user_id=1, conversation_ids=[1])

    assert await asyncio.wait_for(sub.wait(timeout=0.01), 1) == []
    await hub.close()


async def test_a_connection_without_a_waiting_task_is_called_when_there_is_something_to_take() -> (
    None
):
    """The WebSocket writer holds no task while idle: `on_ready` wakes it, `take` never waits."""
    hub = Hub(start_pos=0, fetch_range=Database([]).fetch, queue_limit=3)
    sub = hub.subscribe(user_id=1, conversation_ids=[1])
    calls: list[int] = []
    sub.on_ready = lambda: calls.append(sub.backlog)

    assert sub.take(10) == []
    hub.ingest([message(1), message(2)])
    assert calls == [1, 2]
    assert positions(sub.take(1)) == [1]
    assert positions(sub.take(10)) == [2]
    hub.ingest([message(p) for p in range(3, 7)])  # four more than it takes: over its limit
    assert sub.overflowed and sub.take(10) == []
    calls.clear()
    hub.unsubscribe(sub)
    assert sub.closed and calls == [0]
    await hub.close()
