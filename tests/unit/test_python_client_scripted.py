"""The Python client against a scripted fake node: what it does with what a server may send.

Duplicates, gaps, resync errors, throttling, refusals and failover are played by hand through
`httpx.MockTransport`, so each reaction is shown without timing luck.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from parley.client import Event, ParleyClient, ParleyClientError, Unauthenticated
from tests.support.fake_parley import FakeParley, refusal
from tests.support.servers import free_port
from tests.support.waiting import eventually

BASE = "http://node-a.test"


@pytest.fixture
async def fake() -> AsyncIterator[FakeParley]:
    node = FakeParley()
    yield node
    node.close()


@pytest.fixture
async def http(fake: FakeParley) -> AsyncIterator[httpx.AsyncClient]:
    client = fake.http()
    yield client
    await client.aclose()


@pytest.fixture
async def opened() -> AsyncIterator[list[ParleyClient]]:
    clients: list[ParleyClient] = []
    yield clients
    for client in clients:
        await client.close()


@pytest.fixture
def make_client(http: httpx.AsyncClient, opened: list[ParleyClient]) -> Callable[..., ParleyClient]:
    def make(**options: Any) -> ParleyClient:
        options.setdefault("base_url", BASE)
        options.setdefault("transport", "sse")
        options.setdefault("reconnect_delay", 0.01)
        client = ParleyClient(token="t", http=http, **options)
        opened.append(client)
        return client

    return make


def messages_of(events: list[Event]) -> list[int]:
    return [e.message.seq for e in events if e.message is not None]


async def test_a_duplicate_on_the_stream_is_counted_reported_and_not_handed_out(
    fake: FakeParley, make_client: Callable[..., ParleyClient]
) -> None:
    client = make_client()
    seen: list[Event] = []
    client.on(seen.append, "message")
    await client.connect()
    stream = await fake.next_stream(1)
    first, second = fake.store(1, "a"), fake.store(1, "b")

    for message in (first, first, second):
        stream.send(fake.event(message))
    await eventually(lambda: len(seen) == 2)
    await client.close()

    assert messages_of(seen) == [1, 2]
    assert [m.seq for m in client.timeline(1)] == [1, 2]
    assert client.stats().by_transport["sse"].counters["timeline_duplicate_detected"] == 1
    assert fake.reports[-1]["transport"] == "sse"
    assert fake.reports[-1]["counters"]["timeline_duplicate_detected"] == 1


async def test_a_gap_on_the_stream_is_filled_over_rest_before_the_next_message(
    fake: FakeParley, make_client: Callable[..., ParleyClient]
) -> None:
    client = make_client()
    seen: list[Event] = []
    client.on(seen.append, "message")
    await client.connect()
    stream = await fake.next_stream(1)
    stored = [fake.store(1, f"m{i}") for i in range(4)]

    stream.send(fake.event(stored[0]))
    stream.send(fake.event(stored[3]))  # seq 2 and 3 never came
    await eventually(lambda: len(seen) == 4)

    assert messages_of(seen) == [1, 2, 3, 4]
    assert [e.source for e in seen] == ["stream", "fill", "fill", "stream"]
    assert [m.body for m in client.timeline(1)] == ["m0", "m1", "m2", "m3"]
    pages = [r for r in fake.requests if r.url.path == "/v1/conversations/1/messages"]
    assert [r.url.params["after"] for r in pages] == ["1"]
    assert client.stats().total("timeline_duplicate_detected") == 0


async def test_range_unavailable_loads_full_state_and_reconnects_without_cursor(
    fake: FakeParley, make_client: Callable[..., ParleyClient]
) -> None:
    for i in range(3):
        fake.store(1, f"old {i}")
    client = make_client(cursor="1")
    await client.connect()
    stream = await fake.next_stream(1)

    stream.send({"type": "error", "code": "ERR_RESYNC_RANGE_UNAVAILABLE", "message": "too old"})
    stream.end()
    await fake.next_stream(2)
    await eventually(lambda: len(client.timeline(1)) == 3)

    assert [s.cursor for s in fake.streams] == ["1", None]
    counters = client.stats().by_transport["sse"].counters
    assert (counters["forced_resyncs"], counters["full_state_loads"]) == (1, 1)
    assert client.cursor == str(fake.head)


async def test_a_refused_resume_with_range_unavailable_also_resyncs(
    fake: FakeParley, make_client: Callable[..., ParleyClient]
) -> None:
    fake.store(1, "kept")
    fake.sse_refusals.append(refusal(409, "ERR_RESYNC_RANGE_UNAVAILABLE"))
    client = make_client(cursor="99")

    await client.connect()

    assert [s.cursor for s in fake.streams] == [None]
    assert [m.body for m in client.timeline(1)] == ["kept"]
    assert client.stats().forced_resyncs == 1


async def test_a_throttled_resume_waits_the_retry_hint_and_keeps_its_cursor(
    fake: FakeParley, make_client: Callable[..., ParleyClient]
) -> None:
    fake.sse_refusals.append(refusal(429, "ERR_RESYNC_THROTTLED", retry_after=0.4))
    client = make_client(cursor="5")
    started = time.monotonic()

    await client.connect()

    assert time.monotonic() - started >= 0.4
    assert [s.cursor for s in fake.streams] == ["5"]
    assert client.stats().forced_resyncs == 0


async def test_a_websocket_that_cannot_connect_falls_back_to_sse_within_3s(
    fake: FakeParley, make_client: Callable[..., ParleyClient]
) -> None:
    nothing_listens = f"http://127.0.0.1:{free_port()}"
    client = make_client(base_url=nothing_listens, transport="ws")
    started = time.monotonic()

    await client.connect()

    assert time.monotonic() - started < 3
    assert client.transport == "sse"
    assert client.stats().fallbacks == 1


async def test_sse_that_is_not_served_falls_back_to_long_poll(
    fake: FakeParley, make_client: Callable[..., ParleyClient]
) -> None:
    fake.serve_sse = False
    client = make_client(transport="sse")

    await client.connect()
    ack = await client.send(1, "over poll")

    assert client.transport == "poll"
    assert (ack.transport, ack.seq) == ("poll", 1)


async def test_sse_that_never_says_hello_gives_way_to_long_poll_within_the_budget(
    fake: FakeParley, make_client: Callable[..., ParleyClient]
) -> None:
    fake.sse_says_hello = False
    client = make_client(transport="sse")
    started = time.monotonic()

    await client.connect()

    assert client.transport == "poll"
    assert time.monotonic() - started < 3


async def test_without_fallback_a_transport_that_cannot_connect_is_retried_not_replaced(
    make_client: Callable[..., ParleyClient],
) -> None:
    client = make_client(base_url=f"http://127.0.0.1:{free_port()}", transport="ws", fallback=False)

    with pytest.raises(ParleyClientError) as refused:
        await client.connect(timeout=1.0)

    assert refused.value.code == "ERR_CONNECT_TIMEOUT"
    assert client.transport == "ws"


async def test_a_refused_token_stops_the_client(
    fake: FakeParley, make_client: Callable[..., ParleyClient]
) -> None:
    fake.sse_refusals.append(refusal(401, "ERR_UNAUTHENTICATED"))
    client = make_client()

    with pytest.raises(Unauthenticated):
        await client.connect()
    with pytest.raises(ParleyClientError):
        await client.send(1, "never")


async def test_a_send_that_fails_is_retried_with_the_same_client_msg_id(
    fake: FakeParley, make_client: Callable[..., ParleyClient]
) -> None:
    fake.send_failures += [refusal(503, "ERR_UNAVAILABLE"), refusal(503, "ERR_UNAVAILABLE")]
    client = make_client()
    await client.connect()

    ack = await client.send(1, "eventually")

    posts = [r for r in fake.requests if r.method == "POST" and r.url.path.endswith("/messages")]
    assert len(posts) == 3
    assert len({r.content for r in posts}) == 1
    assert ack.seq == 1 and not ack.duplicate
    assert [m["body"] for m in fake.stored[1]] == ["eventually"]


async def test_a_send_the_server_refuses_for_good_raises_at_once(
    fake: FakeParley, make_client: Callable[..., ParleyClient]
) -> None:
    fake.send_failures.append(refusal(404, "ERR_NOT_FOUND"))
    client = make_client()
    await client.connect()

    with pytest.raises(ParleyClientError) as refused:
        await client.send(1, "nowhere")

    assert refused.value.code == "ERR_NOT_FOUND"


async def test_a_draining_node_sends_the_client_to_the_next_url_with_its_cursor(
    fake: FakeParley, make_client: Callable[..., ParleyClient]
) -> None:
    client = make_client(base_url=[BASE, "http://node-b.test"])
    await client.connect()
    stream = await fake.next_stream(1)
    stream.send(fake.event(fake.store(1, "before")))
    await eventually(lambda: client.cursor == "1")

    stream.send({"type": "control", "op": "reconnect", "reason": "shutdown"})
    resumed = await fake.next_stream(2)

    assert (resumed.host, resumed.cursor) == ("node-b.test", "1")
    await eventually(lambda: client.base_url == "http://node-b.test")


async def test_a_receipt_that_would_move_back_is_counted_and_not_applied(
    fake: FakeParley, make_client: Callable[..., ParleyClient]
) -> None:
    client = make_client()
    await client.connect()
    stream = await fake.next_stream(1)

    for read in (5, 3):
        stream.send(
            {
                "type": "receipt",
                "conversation_id": 1,
                "user_id": 2,
                "delivered_seq": read,
                "read_seq": read,
            }
        )
    await eventually(lambda: client.stats().total("read_rollback_detected") == 1)

    assert client.receipts(1)[2].read_seq == 5


async def test_a_send_before_connect_goes_over_rest(
    fake: FakeParley, make_client: Callable[..., ParleyClient]
) -> None:
    client = make_client(transport="ws")

    ack = await client.send(1, "early")

    assert (ack.seq, ack.transport) == (1, "ws")
    assert [m.body for m in client.timeline(1)] == ["early"]


async def test_events_end_when_the_client_closes(
    fake: FakeParley, make_client: Callable[..., ParleyClient]
) -> None:
    client = make_client()
    events = client.events()
    await client.connect()

    await client.close()
    seen = [event.type async for event in events]

    assert seen == ["hello"]
