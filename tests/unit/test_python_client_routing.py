"""Where the Python client connects next: transport order, the 3 s budget, failover."""

from __future__ import annotations

from parley.clients.models import TransportName
from parley.clients.routing import Route
from parley.clients.streams import Next, StreamEnded


def route(transport: TransportName = "ws", *, fallback: bool = True, urls: int = 1) -> Route:
    base_urls = [f"http://node-{i}.test" for i in range(urls)]
    return Route(base_urls, transport, fallback=fallback, delay=0.3, delay_max=10)


def test_a_round_tries_the_preferred_transport_then_the_ones_after_it() -> None:
    assert route("ws").round() == ["ws", "sse", "poll"]
    assert route("sse").round() == ["sse", "poll"]
    assert route("ws", fallback=False).round() == ["ws"]


def test_the_transport_that_worked_is_tried_first_after_a_drop() -> None:
    chosen = route("ws")
    chosen.connected("sse")

    assert chosen.round() == ["sse", "ws", "poll"]
    assert (chosen.transport, chosen.fallbacks) == ("sse", 1)


def test_sse_only_leaves_websocket_out_fallback_or_not_until_auto() -> None:
    pinned = route("ws", fallback=False)

    pinned.after_end(StreamEnded(Next.USE_SSE, "4003"), 1)
    assert pinned.round() == ["sse"]
    pinned.note_mode("auto")
    assert pinned.round() == ["ws"]


def test_every_transport_gets_its_turn_within_the_budget() -> None:
    budget = 3.0

    first = Route.attempt_timeout(budget, still_to_try=2, budget=budget)
    second = Route.attempt_timeout(budget - first, still_to_try=1, budget=budget)
    last = Route.attempt_timeout(budget - first - second, still_to_try=0, budget=budget)

    assert first == 2.0
    assert second == 0.5
    assert first + second <= budget - 0.5
    assert last == 2.0  # the last one may finish past the budget, but starts inside it


def test_a_draining_node_sends_the_client_to_the_next_url_at_once() -> None:
    chosen = route(urls=2)

    delay = chosen.after_end(StreamEnded(Next.FAILOVER, "1012"), 1)

    assert chosen.base_url == "http://node-1.test"
    assert delay <= 0.3


def test_a_failed_round_backs_off_and_moves_on() -> None:
    chosen = route(urls=2)
    chosen.connected("sse")

    delays = [chosen.after_failed_round(n) for n in (1, 2, 3)]

    assert chosen.base_url == "http://node-1.test"
    assert chosen.round()[0] == "ws"
    assert delays[0] <= 0.3 and 0.6 <= delays[2] <= 1.2


def test_a_throttled_resume_waits_its_retry_hint() -> None:
    delay = route().after_end(StreamEnded(Next.WAIT, "429", retry_after=4), 1)

    assert 4 <= delay <= 4.5
