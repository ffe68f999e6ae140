"""The Python client's P0 bookkeeping: write receipts, the 10 s watchdog, report deltas."""

from __future__ import annotations

import pytest

from parley.clients.invariants import Invariants


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_write_receipt_is_the_time_from_ack_to_the_stream() -> None:
    clock = FakeClock()
    book = Invariants(clock=clock)

    book.acked("ws", 1, 5, on_stream=False)
    clock.now += 0.025
    book.received("ws", 1, 5)

    assert list(book.stats("ws").write_receipt_ms) == [pytest.approx(25.0)]
    assert book.awaiting_receipt == 0


def test_a_message_the_stream_brought_before_its_ack_has_a_zero_receipt() -> None:
    book = Invariants(clock=FakeClock())

    book.acked("sse", 1, 5, on_stream=True)

    assert list(book.stats("sse").write_receipt_ms) == [0.0]
    assert book.awaiting_receipt == 0


def test_an_ack_without_receipt_for_ten_seconds_is_counted_once() -> None:
    clock = FakeClock()
    book = Invariants(clock=clock)
    book.acked("poll", 1, 1, on_stream=False)
    clock.now += 5
    book.acked("poll", 1, 2, on_stream=False)

    clock.now += 5.5
    first = book.expire()
    clock.now += 10
    second = book.expire()
    book.received("poll", 1, 1)

    assert (first, second) == (1, 1)
    assert book.stats("poll").counters["ack_without_receipt_10s"] == 2
    assert not book.stats("poll").write_receipt_ms


def test_reports_carry_deltas_per_transport_and_come_back_when_not_posted() -> None:
    clock = FakeClock()
    book = Invariants(clock=clock)
    book.count("ws", "timeline_duplicate_detected")
    book.acked("sse", 1, 1, on_stream=True)

    reports = {r.transport: r for r in book.take_reports()}
    assert reports["ws"].counters["timeline_duplicate_detected"] == 1
    assert reports["sse"].write_receipt_ms == [0.0]
    assert book.take_reports() == []

    book.restore(reports["ws"])
    book.count("ws", "timeline_duplicate_detected")
    (again,) = book.take_reports()
    assert again.to_json()["counters"]["timeline_duplicate_detected"] == 2
    assert book.stats("ws").counters["timeline_duplicate_detected"] == 2


def test_percentiles_come_from_the_kept_samples() -> None:
    clock = FakeClock()
    book = Invariants(clock=clock)
    for seq in range(1, 101):
        book.acked("ws", 1, seq, on_stream=False)
        clock.now += seq / 1000
        book.received("ws", 1, seq)

    stats = book.stats("ws")
    assert stats.write_receipt_percentile_ms(95) == pytest.approx(95.0)
    assert stats.acks == stats.messages_received == 100
