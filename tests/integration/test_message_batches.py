"""Group-commit batches from two nodes at once, straight at the store, on SQLite and PostgreSQL.

Positions must stay gapless and follow commit order, whatever order the batches name their
conversations in (the head's lock is taken before any conversation's: no deadlock).
"""

from __future__ import annotations

import asyncio

from parley.assembly import Services
from parley.core.models import NewMessage
from parley.storage.database import Database
from parley.storage.messages import MessageStore
from tests.conftest import PeopleFactory, create_conversation


async def test_batches_of_two_nodes_naming_conversations_in_opposite_orders_keep_pos_gapless(
    people: PeopleFactory, services: Services, database_url: str
) -> None:
    alice, bob = await people.add(), await people.add()
    first = await create_conversation(alice, bob)
    second = await create_conversation(alice, bob)
    other_node = Database(database_url)
    stores = [services.timeline.messages, MessageStore(other_node)]

    def batch(node: int, round_: int, order: list[int]) -> list[NewMessage]:
        return [
            NewMessage(
                conversation_id=cid,
                sender_id=alice.user.id,
                client_msg_id=f"n{node}.r{round_}.{i}",
                body="x",
            )
            for i, cid in enumerate(order * 3)
        ]

    try:
        for round_ in range(10):
            answers = await asyncio.gather(
                stores[0].append_batch(batch(0, round_, [first, second])),
                stores[1].append_batch(batch(1, round_, [second, first])),
            )
            assert all(a.created for node in answers for a in node)
    finally:
        await other_node.dispose()

    stored = [
        m
        for cid in (first, second)
        for m in await services.timeline.messages.list_messages(cid, limit=500)
    ]
    assert len(stored) == 2 * 10 * 6
    positions = sorted(m.pos for m in stored)
    assert positions == list(range(positions[0], positions[0] + len(stored)))
    for cid in (first, second):
        timeline = sorted((m for m in stored if m.conversation_id == cid), key=lambda m: m.seq)
        assert [m.seq for m in timeline] == list(range(1, len(timeline) + 1))
        # Commit order: a later seq of a conversation never has an earlier position.
        assert [m.pos for m in timeline] == sorted(m.pos for m in timeline)


async def test_a_retried_batch_answers_the_stored_messages_and_takes_no_new_positions(
    people: PeopleFactory, services: Services
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    store = services.timeline.messages
    sends = [
        NewMessage(conversation_id=cid, sender_id=alice.user.id, client_msg_id=f"m{i}", body="x")
        for i in range(4)
    ]

    stored = await store.append_batch(sends[:2])
    again = await store.append_batch(sends)

    assert [a.created for a in again] == [False, False, True, True]
    assert [a.message.id for a in again[:2]] == [a.message.id for a in stored]
    assert [a.message.seq for a in again] == [1, 2, 3, 4]
    assert again[3].message.pos == again[2].message.pos + 1 == stored[1].message.pos + 2
