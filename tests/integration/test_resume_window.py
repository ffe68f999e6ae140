"""Resume limits: the retention window and the resync throttle (docs/realtime.md)."""

from __future__ import annotations

import pytest

from parley.assembly import Services
from parley.core.errors import ErrorCode, RateLimited, ResyncRangeUnavailable
from parley.settings import Settings
from tests.conftest import PeopleFactory, create_conversation


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"resume_window_events": 5, "resume_rate": "3/minute", "resume_max_messages": 4}
    )


async def _send_many(people: PeopleFactory, count: int) -> tuple[int, list[int]]:
    alice = await people.add()
    cid = await create_conversation(alice)
    positions = []
    for n in range(count):
        response = await alice.http.post(
            f"/v1/conversations/{cid}/messages", json={"client_msg_id": str(n), "body": "x"}
        )
        positions.append(response.json()["pos"])
    return alice.user.id, positions


async def test_a_cursor_older_than_the_window_is_range_unavailable(
    people: PeopleFactory, services: Services
) -> None:
    user_id, positions = await _send_many(people, 8)
    user = await services.identity.users.get_user(user_id)
    assert user is not None

    with pytest.raises(ResyncRangeUnavailable) as refused:
        await services.stream.open(user, cursor="1", transport="ws")
    recent = await services.stream.open(user, cursor=str(positions[-3]), transport="ws")

    assert refused.value.code == ErrorCode.RESYNC_RANGE_UNAVAILABLE
    assert [e.pos for e in recent.backlog if e.type == "message"] == positions[-2:]
    await services.stream.close(recent)


async def test_more_missed_messages_than_a_resume_resends_means_full_state(
    people: PeopleFactory, services: Services
) -> None:
    user_id, _ = await _send_many(people, 5)
    user = await services.identity.users.get_user(user_id)
    assert user is not None

    with pytest.raises(ResyncRangeUnavailable):
        await services.stream.open(user, cursor="0", transport="sse")


async def test_resuming_too_often_is_throttled_with_a_retry_hint(
    people: PeopleFactory, services: Services
) -> None:
    user_id, positions = await _send_many(people, 3)
    user = await services.identity.users.get_user(user_id)
    assert user is not None
    sessions = [
        await services.stream.open(user, cursor=str(positions[0]), transport="sse")
        for _ in range(3)
    ]

    with pytest.raises(RateLimited) as throttled:
        await services.stream.open(user, cursor=str(positions[0]), transport="ws")
    live = await services.stream.open(user, cursor=str(positions[-1]), transport="sse")

    assert throttled.value.code == ErrorCode.RESYNC_THROTTLED
    assert 1 <= throttled.value.retry_after <= 60
    assert live.backlog == []  # nothing missed: not a resync, not throttled
    for session in [*sessions, live]:
        await services.stream.close(session)


async def test_ordinary_long_polling_a_little_behind_is_never_throttled(
    people: PeopleFactory, services: Services
) -> None:
    user_id, positions = await _send_many(people, 3)
    user = await services.identity.users.get_user(user_id)
    assert user is not None

    for _ in range(10):
        session = await services.stream.open(user, cursor=str(positions[0]), transport="poll")
        assert [e.pos for e in session.backlog if e.type == "message"] == positions[1:]
        await services.stream.close(session)
