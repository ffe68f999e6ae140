"""MessageWriter: group commit over an in-memory store (pure asyncio, no database)."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from parley.core.errors import BadInput, Unavailable
from parley.core.models import Appended, Message, NewMessage
from parley.core.writer import MessageWriter


class FakeStore:
    """Numbers sends per conversation like MessageStore, and records every batch it is given.

    `hold` (when set) keeps a batch waiting until the test releases it; a send whose body is in
    `refuse` makes any batch containing it fail, as a constraint violation would.
    """

    def __init__(self) -> None:
        self.batches: list[list[NewMessage]] = []
        self.entered = asyncio.Event()
        self.hold: asyncio.Event | None = None
        self.refuse: dict[str, Exception] = {}
        self.last_seq: dict[int, int] = defaultdict(int)
        self.ids = itertools.count(1)

    async def append_batch(self, batch: list[NewMessage]) -> list[Appended]:
        self.batches.append(list(batch))
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        for send in batch:
            if send.body in self.refuse:
                raise self.refuse[send.body]
        return [Appended(self._store(send), created=True) for send in batch]

    def _store(self, send: NewMessage) -> Message:
        self.last_seq[send.conversation_id] += 1
        seq = self.last_seq[send.conversation_id]
        return Message(
            id=next(self.ids),
            conversation_id=send.conversation_id,
            seq=seq,
            pos=seq,
            sender_id=send.sender_id,
            client_msg_id=send.client_msg_id,
            body=send.body,
            attachments=[],
            metadata={},
            created_at=datetime.now(UTC),
        )


def new(body: str, conversation_id: int = 1) -> NewMessage:
    return NewMessage(conversation_id=conversation_id, sender_id=7, client_msg_id=body, body=body)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def writer(store: FakeStore) -> AsyncIterator[MessageWriter]:
    writer = MessageWriter(store, shards=2)
    writer.start()
    yield writer
    if store.hold is not None:
        store.hold.set()
    await writer.stop()


async def test_sends_queued_while_a_batch_commits_form_one_next_batch(
    writer: MessageWriter, store: FakeStore
) -> None:
    store.hold = asyncio.Event()
    first = asyncio.create_task(writer.append(new("first")))
    await store.entered.wait()
    waiting = [asyncio.create_task(writer.append(new(f"m{n}"))) for n in range(20)]
    await asyncio.sleep(0)  # let every send reach the queue

    store.hold.set()
    results = await asyncio.gather(first, *waiting)

    assert [len(batch) for batch in store.batches] == [1, 20]
    assert [r.message.seq for r in results] == list(range(1, 22))


async def test_many_concurrent_sends_take_fewer_batches_than_sends(
    writer: MessageWriter, store: FakeStore
) -> None:
    results = await asyncio.gather(*(writer.append(new(f"m{n}")) for n in range(50)))

    assert len(results) == 50
    assert len(store.batches) < 50
    assert sum(len(batch) for batch in store.batches) == 50


async def test_ack_resolves_only_after_the_batch_is_stored(
    writer: MessageWriter, store: FakeStore
) -> None:
    store.hold = asyncio.Event()
    sends = [asyncio.create_task(writer.append(new(f"m{n}"))) for n in range(3)]
    await store.entered.wait()
    await asyncio.sleep(0)

    assert not any(send.done() for send in sends)
    store.hold.set()
    results = await asyncio.gather(*sends)
    assert all(result.created for result in results)


async def test_each_conversation_keeps_its_arrival_order(
    writer: MessageWriter, store: FakeStore
) -> None:
    sends = [new(f"c{cid}-{n}", conversation_id=cid) for n in range(30) for cid in (1, 2, 3)]

    results = await asyncio.gather(*(writer.append(send) for send in sends))

    for cid in (1, 2, 3):
        mine = [r.message for r in results if r.message.conversation_id == cid]
        assert [m.body for m in mine] == [f"c{cid}-{n}" for n in range(30)]
        assert [m.seq for m in mine] == list(range(1, 31))


async def test_one_refused_send_does_not_fail_its_batch_neighbours(
    writer: MessageWriter, store: FakeStore
) -> None:
    store.refuse["bad"] = BadInput("refused by the store")
    store.hold = asyncio.Event()
    first = asyncio.create_task(writer.append(new("first")))
    await store.entered.wait()
    batch = [asyncio.create_task(writer.append(new(body))) for body in ("a", "bad", "b")]
    await asyncio.sleep(0)
    store.hold.set()

    await first
    a, bad, b = await asyncio.gather(*batch, return_exceptions=True)

    assert isinstance(bad, BadInput) and bad.message == "refused by the store"
    assert isinstance(a, Appended) and isinstance(b, Appended)
    assert (a.message.body, b.message.body) == ("a", "b")
    assert [len(batch) for batch in store.batches] == [1, 3, 1, 1, 1]  # then retried singly


async def test_unexpected_store_error_reaches_the_sender_as_unavailable(
    writer: MessageWriter, store: FakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.refuse["boom"] = RuntimeError("disk on fire")

    with pytest.raises(Unavailable):
        await writer.append(new("boom"))

    assert (await writer.append(new("after"))).created  # the writer keeps going
    assert "storing a message failed" in caplog.text


async def test_stop_drains_queued_sends_then_refuses_new_ones(
    writer: MessageWriter, store: FakeStore
) -> None:
    store.hold = asyncio.Event()
    queued = [asyncio.create_task(writer.append(new(f"m{n}", conversation_id=n))) for n in range(6)]
    await store.entered.wait()
    await asyncio.sleep(0)

    stopping = asyncio.create_task(writer.stop())
    await asyncio.sleep(0)
    assert not stopping.done()  # waits for the queued sends
    store.hold.set()
    await stopping

    assert all(send.done() and send.result().created for send in queued)
    with pytest.raises(Unavailable):
        await writer.append(new("late"))


async def test_a_store_answering_the_wrong_number_of_results_fails_sends_not_the_writer() -> None:
    class Miscounting(FakeStore):
        async def append_batch(self, batch: list[NewMessage]) -> list[Appended]:
            answers = await super().append_batch(batch)
            return [] if len(self.batches) == 1 else answers  # the first answer is broken

    writer = MessageWriter(Miscounting())
    writer.start()
    try:
        with pytest.raises(Unavailable):
            await asyncio.wait_for(writer.append(new("first")), 5)
        later = await asyncio.wait_for(writer.append(new("second")), 5)
    finally:
        await asyncio.wait_for(writer.stop(), 5)
    assert later.created and later.message.body == "second"


async def test_a_batch_is_published_before_its_sends_are_answered(store: FakeStore) -> None:
    """A sender's stream has its message no later than its ack (the transports write both)."""
    writer = MessageWriter(store)
    seen: list[str] = []

    async def on_commit(results: list[Appended]) -> None:
        for _ in range(5):
            await asyncio.sleep(0)  # time for any send already answered to say so
        seen.extend(f"published {r.message.body}" for r in results)

    writer.on_commit = on_commit
    writer.start()
    try:
        sends = [asyncio.create_task(writer.append(new(f"m{n}"))) for n in range(3)]
        for n, send in enumerate(sends):
            send.add_done_callback(lambda _, n=n: seen.append(f"answered m{n}"))
        await asyncio.gather(*sends)
        await asyncio.sleep(0)
    finally:
        await writer.stop()

    assert seen == [f"published m{n}" for n in range(3)] + [f"answered m{n}" for n in range(3)]
