"""The Python client's reading of the wire: SSE framing, close codes, error events, backoff."""

from __future__ import annotations

import pytest

from parley.clients.models import ParleyClientError
from parley.clients.routing import backoff_delay
from parley.clients.streams import (
    Next,
    OpenFailed,
    StreamEnded,
    _SseDecoder,
    ended_by_close,
    ended_by_error,
    ended_by_response,
)


def feed(decoder: _SseDecoder, text: str) -> list[dict[str, object]]:
    events = []
    for line in text.split("\n"):
        event = decoder.feed(line)
        if event is not None:
            events.append(event)
    return events


def test_sse_events_are_read_with_ids_comments_and_retry_lines_skipped() -> None:
    text = (
        'retry: 1000\nevent: hello\ndata: {"type": "hello", "cursor": "3"}\n\n'
        ": keepalive\n\n"
        'id: 4\nevent: message\ndata: {"type": "message", "pos": 4}\n\n'
    )

    events = feed(_SseDecoder(), text)

    assert events == [{"type": "hello", "cursor": "3"}, {"type": "message", "pos": 4}]


def test_sse_data_split_over_lines_is_joined_and_the_event_name_fills_a_missing_type() -> None:
    events = feed(_SseDecoder(), 'event: receipt\ndata: {"read_seq":\ndata:  5}\n\n')

    assert events == [{"type": "receipt", "read_seq": 5}]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (1000, Next.RECONNECT),
        (1006, Next.RECONNECT),
        (1012, Next.FAILOVER),
        (4001, Next.SIGN_IN),
        (4003, Next.USE_SSE),
        (4008, Next.RECONNECT),
        (4009, Next.RESYNC),
        (4029, Next.WAIT),
        (None, Next.RECONNECT),
    ],
)
def test_each_close_code_decides_what_comes_next(code: int | None, expected: Next) -> None:
    assert ended_by_close(code, "").next is expected


def test_a_throttled_close_carries_its_retry_hint() -> None:
    assert ended_by_close(4029, '{"retry_after": 7}').retry_after == 7
    assert ended_by_close(4029, "ERR_RESYNC_THROTTLED").retry_after == 5


def test_resync_errors_end_the_stream_and_other_errors_do_not() -> None:
    range_gone = ended_by_error({"code": "ERR_RESYNC_RANGE_UNAVAILABLE", "message": "old"})
    throttled = ended_by_error({"code": "ERR_RESYNC_THROTTLED", "retry_after": 2.5})

    assert range_gone is not None and range_gone.next is Next.RESYNC
    assert throttled is not None and (throttled.next, throttled.retry_after) == (Next.WAIT, 2.5)
    assert ended_by_error({"code": "ERR_VALIDATION", "message": "bad frame"}) is None


def test_refused_stream_requests_map_by_code_then_status() -> None:
    def refused(code: str, status: int, retry_after: float | None = None) -> object:
        return ended_by_response(
            ParleyClientError(code, "x", status=status, retry_after=retry_after)
        )

    resync = refused("ERR_RESYNC_RANGE_UNAVAILABLE", 409)
    throttled = refused("ERR_RESYNC_THROTTLED", 429, 9)
    assert isinstance(resync, StreamEnded) and resync.next is Next.RESYNC
    assert isinstance(throttled, StreamEnded) and throttled.retry_after == 9
    assert isinstance(refused("ERR_UNAUTHENTICATED", 401), StreamEnded)
    assert isinstance(refused("ERR_NOT_FOUND", 404), OpenFailed)
    unavailable = refused("ERR_UNAVAILABLE", 503)
    assert isinstance(unavailable, StreamEnded) and unavailable.next is Next.RECONNECT


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    delays = [backoff_delay(attempt, 0.25, 10.0) for attempt in range(1, 12)]

    assert 0.125 <= delays[0] <= 0.25
    assert 1.0 <= delays[3] <= 2.0
    assert all(5.0 <= d <= 10.0 for d in delays[7:])
