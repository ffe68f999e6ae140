"""The Python client's timeline: one copy per seq, in order; stream duplicates and gaps found."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from parley.clients.models import Message
from parley.clients.timeline import Arrival, Timeline


def msg(seq: int, body: str = "", sender_id: int | None = 1) -> Message:
    return Message(
        id=seq, conversation_id=7, seq=seq, client_msg_id=f"c{seq}", body=body, sender_id=sender_id
    )


def test_stream_messages_are_kept_in_seq_order_whatever_order_they_come_in() -> None:
    timeline = Timeline(7)

    for seq in (3, 1, 2, 5, 4):
        timeline.add_streamed(msg(seq))

    assert [m.seq for m in timeline.messages()] == [1, 2, 3, 4, 5]
    assert timeline.last_seq == 5


def test_a_seq_delivered_twice_by_the_stream_is_a_duplicate_and_kept_once() -> None:
    timeline = Timeline(7)

    first = timeline.add_streamed(msg(1, "original"))
    second = timeline.add_streamed(msg(1, "replayed"))

    assert (first, second) == (Arrival.NEW, Arrival.DUPLICATE)
    assert [m.body for m in timeline.messages()] == ["original"]


def test_the_stream_bringing_an_acked_message_is_its_receipt_not_a_duplicate() -> None:
    timeline = Timeline(7)
    timeline.add_known(msg(1, "mine", sender_id=None))

    arrival = timeline.add_streamed(msg(1, "mine", sender_id=42))

    assert arrival is Arrival.RECEIPT
    assert [(m.body, m.sender_id) for m in timeline.messages()] == [("mine", 42)]
    assert timeline.add_streamed(msg(1, "mine")) is Arrival.DUPLICATE


def test_rest_copies_never_count_as_duplicates_and_never_replace_the_streamed_copy() -> None:
    timeline = Timeline(7)
    timeline.add_streamed(msg(1, "streamed"))

    assert timeline.add_known(msg(1, "from rest")) is False
    assert [m.body for m in timeline.messages()] == ["streamed"]


def test_a_client_that_joins_late_does_not_see_history_as_a_gap() -> None:
    timeline = Timeline(7)

    assert timeline.gap_before(40) is None
    timeline.add_streamed(msg(40))

    assert timeline.gap_before(41) is None
    assert timeline.complete_through == 40


def test_a_skipped_seq_on_the_stream_is_a_gap_to_fill() -> None:
    timeline = Timeline(7)
    timeline.add_streamed(msg(1))
    timeline.add_streamed(msg(2))

    assert timeline.gap_before(6) == (3, 5)


def test_an_ack_that_beats_the_stream_does_not_open_a_gap() -> None:
    timeline = Timeline(7)
    timeline.add_streamed(msg(1))
    timeline.add_known(msg(3))  # my own send, acked before the stream brought seq 2

    assert timeline.gap_before(2) is None
    timeline.add_streamed(msg(2))
    assert timeline.complete_through == 3
    assert timeline.add_streamed(msg(3)) is Arrival.RECEIPT


def test_filling_a_gap_closes_it_even_when_the_server_had_less() -> None:
    timeline = Timeline(7)
    timeline.add_streamed(msg(1))
    gap = timeline.gap_before(5)
    assert gap == (2, 4)

    timeline.add_known(msg(2))
    timeline.add_known(msg(4))
    timeline.mark_complete_through(gap[1])
    timeline.add_streamed(msg(5))

    assert timeline.gap_before(6) is None
    assert [m.seq for m in timeline.messages()] == [1, 2, 4, 5]


def test_a_full_state_page_sets_where_the_timeline_is_complete() -> None:
    timeline = Timeline(7)
    timeline.add_streamed(msg(1))

    timeline.load_page([msg(8), msg(9), msg(10)], last_seq=10)

    assert timeline.complete_through == 10
    assert timeline.gap_before(11) is None
    assert [m.seq for m in timeline.messages()] == [1, 8, 9, 10]


def test_a_full_state_page_of_an_empty_conversation_starts_it_at_zero() -> None:
    timeline = Timeline(7)

    timeline.load_page([], last_seq=0)

    assert timeline.gap_before(1) is None
    assert timeline.gap_before(3) == (1, 2)


@given(st.lists(st.integers(min_value=1, max_value=30), max_size=120))
def test_any_delivery_order_gives_one_sorted_copy_and_counts_each_repeat(
    deliveries: list[int],
) -> None:
    timeline = Timeline(7)

    arrivals = [timeline.add_streamed(msg(seq)) for seq in deliveries]

    seqs = [m.seq for m in timeline.messages()]
    assert seqs == sorted(set(deliveries))
    assert arrivals.count(Arrival.DUPLICATE) == len(deliveries) - len(set(deliveries))
