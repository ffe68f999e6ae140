"""Long polls keep their subscription between polls (PARLEY_POLL_PARK_SECONDS): the next poll
by the same client with the cursor it was given continues on it without reading the database.
Everything else — another cursor, another credential, an overflowed, revoked or expired one,
maintenance, removal from a conversation — must come out exactly as a fresh open would."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from parley import metrics
from parley.assembly import Services
from parley.core.errors import Unavailable
from parley.core.models import Role
from parley.services.identity import Credential
from parley.services.stream import PARKED_PER_USER, StreamService
from parley.settings import Settings
from tests.conftest import PeopleFactory, Person, create_conversation
from tests.support.waiting import eventually


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "stream_queue_limit": 10,
            "stream_max_per_user": 3,
            "head_poll_seconds": 0.1,
            "stream_auth_recheck_seconds": 0.1,
            "widget_poll_min_interval_seconds": 0,
        }
    )


def _parked_hits() -> float:
    return metrics.STREAM_POLL_PARKED._value.get()


def _poll_opens() -> float:
    return metrics.STREAM_OPENS.labels("poll")._value.get()


async def _send(person: Person, cid: int, body: str) -> None:
    response = await person.http.post(
        f"/v1/conversations/{cid}/messages",
        json={"client_msg_id": uuid.uuid4().hex, "body": body},
    )
    assert response.status_code == 201, response.text


async def _poll(
    client: httpx.AsyncClient, cursor: str | None = None, timeout: float = 0
) -> dict[str, Any]:
    params: dict[str, Any] = {"timeout": timeout}
    if cursor is not None:
        params["cursor"] = cursor
    response = await client.get("/v1/stream/poll", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _bodies(page: dict[str, Any], cid: int) -> list[str]:
    return [
        e["message"]["body"]
        for e in page["events"]
        if e["type"] == "message" and e["conversation_id"] == cid
    ]


def _parked_of(stream: StreamService, user_id: int) -> list[Any]:
    return [p.session for key, p in stream._parked.items() if key[0] == user_id]


async def test_polls_continue_on_the_parked_subscription_with_no_gap_and_no_repeat(
    people: PeopleFactory,
) -> None:
    ann, ben = await people.add(), await people.add()
    cid = await create_conversation(ann, ben)
    cursor = (await _poll(ben.http))["cursor"]
    hits, opens = _parked_hits(), _poll_opens()
    got: list[str] = []
    for round_ in range(5):
        # Sent while no poll is open: queued in the parked subscription.
        for n in range(2):
            await _send(ann, cid, f"r{round_}m{n}")
        page = await _poll(ben.http, cursor)
        got += _bodies(page, cid)
        assert int(page["cursor"]) >= int(cursor)
        cursor = page["cursor"]

    assert got == [f"r{r}m{n}" for r in range(5) for n in range(2)]
    assert _parked_hits() == hits + 5
    assert _poll_opens() == opens + 5  # a parked poll still counts as a poll
    assert (await _poll(ben.http, cursor))["events"] == []


async def test_a_waiting_parked_poll_wakes_for_a_new_message(
    people: PeopleFactory, services: Services
) -> None:
    ann, ben = await people.add(), await people.add()
    cid = await create_conversation(ann, ben)
    cursor = (await _poll(ben.http))["cursor"]
    hits = _parked_hits()

    waiting = asyncio.create_task(_poll(ben.http, cursor, timeout=10))
    await eventually(lambda: _parked_hits() == hits + 1, what="the poll to take its sub")
    await _send(ann, cid, "live")
    assert _bodies(await waiting, cid) == ["live"]


async def test_a_retried_poll_with_the_older_cursor_gets_the_same_events_then_resumes_exactly(
    people: PeopleFactory,
) -> None:
    ann, ben = await people.add(), await people.add()
    cid = await create_conversation(ann, ben)
    first = (await _poll(ben.http))["cursor"]
    await _send(ann, cid, "a")
    await _send(ann, cid, "b")
    answer = await _poll(ben.http, first)
    hits = _parked_hits()
    # The answer was lost: the client polls again with the cursor it had.
    retried = await _poll(ben.http, first)
    assert _parked_hits() == hits  # another cursor: the database path
    assert _bodies(retried, cid) == _bodies(answer, cid) == ["a", "b"]
    assert retried["cursor"] == answer["cursor"]
    await _send(ann, cid, "c")

    assert _bodies(await _poll(ben.http, retried["cursor"]), cid) == ["c"]
    assert _parked_hits() == hits + 1


async def test_only_the_same_credential_takes_a_parked_subscription(
    people: PeopleFactory, services: Services
) -> None:
    ann, ben = await people.add(), await people.add()
    cid = await create_conversation(ann, ben)
    other_device = people.client(await services.identity.do_issue_token(ben.user))
    cursor = (await _poll(ben.http))["cursor"]
    await _send(ann, cid, "x")
    hits = _parked_hits()

    assert _bodies(await _poll(other_device, cursor), cid) == ["x"]
    assert _parked_hits() == hits
    assert _bodies(await _poll(ann.http, cursor), cid) == ["x"]  # ann's own token: hers
    assert _parked_hits() == hits
    assert _bodies(await _poll(ben.http, cursor), cid) == ["x"]
    assert _parked_hits() == hits + 1


async def test_parked_subscriptions_do_not_count_against_the_caps_and_are_bounded_per_user(
    people: PeopleFactory, services: Services
) -> None:
    ben = await people.add()
    stream = services.stream
    devices = [people.client(await services.identity.do_issue_token(ben.user)) for _ in range(6)]
    for device in devices:  # more parked than PARLEY_STREAM_MAX_PER_USER (3)
        await _poll(device)

    parked = _parked_of(stream, ben.user.id)
    assert len(parked) == PARKED_PER_USER
    assert stream._per_user.get(ben.user.id, 0) == 0
    assert services.stream.live_hub.count_for_user(ben.user.id) == PARKED_PER_USER
    waiting = [asyncio.create_task(_poll(d, "0", timeout=10)) for d in devices[:3]]
    await eventually(lambda: stream._per_user.get(ben.user.id, 0) == 3, what="3 open polls")
    refused = await devices[3].get("/v1/stream/poll", params={"cursor": "0", "timeout": 0})
    assert refused.status_code == 429
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_parked_subscriptions_expire(people: PeopleFactory, services: Services) -> None:
    services.stream.settings = services.stream.settings.model_copy(
        update={"poll_park_seconds": 0.2}
    )
    ben = await people.add()
    await _poll(ben.http)
    assert _parked_of(services.stream, ben.user.id)

    await eventually(lambda: not services.stream._parked, what="the parked sub to expire")
    assert services.stream.live_hub.count_for_user(ben.user.id) == 0


async def test_an_overflowed_parked_subscription_falls_back_to_the_database(
    people: PeopleFactory,
) -> None:
    ann, ben = await people.add(), await people.add()
    cid = await create_conversation(ann, ben)
    cursor = (await _poll(ben.http))["cursor"]
    for n in range(12):  # PARLEY_STREAM_QUEUE_LIMIT is 10
        await _send(ann, cid, f"m{n}")
    hits = _parked_hits()

    page = await _poll(ben.http, cursor)
    assert _bodies(page, cid) == [f"m{n}" for n in range(12)]
    assert _parked_hits() == hits


async def test_signing_out_drops_the_parked_subscription(
    people: PeopleFactory, services: Services
) -> None:
    ben = await people.add()
    cursor = (await _poll(ben.http))["cursor"]
    (parked,) = _parked_of(services.stream, ben.user.id)

    assert (await ben.http.post("/v1/auth/logout")).status_code == 204
    await eventually(lambda: parked.sub.closed, what="the parked sub to be dropped")
    assert not _parked_of(services.stream, ben.user.id)
    refused = await ben.http.get("/v1/stream/poll", params={"cursor": cursor, "timeout": 0})
    assert refused.status_code == 401


async def test_a_revoked_or_expired_token_is_not_served_from_a_parked_subscription(
    people: PeopleFactory, services: Services
) -> None:
    """Straight at the service: the poll that raced the revocation (its credential was checked
    before) gets a fresh open, which ends at once, not the parked subscription."""
    ben = await people.add()
    stream = services.stream
    credential = Credential(user=ben.user, token_id=987_654)
    session = await stream.open(credential, cursor=None, transport="poll", holder="t")
    await stream.finish_poll(session, holder="t", cursor=session.cursor)
    assert _parked_of(stream, ben.user.id)
    stream._revoked[987_654] = (
        time.monotonic()
    )  # heard of, but its bus message went to another parked one
    hits = _parked_hits()

    again = await stream.open(credential, cursor=str(session.cursor), transport="poll", holder="t")
    assert _parked_hits() == hits
    assert again.sub is not session.sub and session.sub.closed
    assert again.sub.closed  # the normal path ended it: the token is revoked
    await stream.close(again)


async def test_a_parked_subscription_told_to_reconnect_is_not_resumed(
    people: PeopleFactory, services: Services
) -> None:
    """Maintenance (and a ban) tell streams to reconnect; a parked one has no client to tell,
    so its next poll opens afresh, through every admission check."""
    ben = await people.add()
    admin = await people.add(role=Role.ADMIN)
    cursor = (await _poll(ben.http))["cursor"]
    (parked,) = _parked_of(services.stream, ben.user.id)

    assert (await admin.http.put("/v1/admin/maintenance", json={"active": True})).is_success
    refused = await ben.http.get("/v1/stream/poll", params={"cursor": cursor, "timeout": 0})
    assert refused.status_code == 503
    assert (await admin.http.put("/v1/admin/maintenance", json={"active": False})).is_success
    hits = _parked_hits()
    await _poll(ben.http, cursor)
    assert _parked_hits() == hits
    assert parked.sub.closed


async def test_a_user_refused_at_admission_loses_their_parked_subscriptions(
    people: PeopleFactory, services: Services
) -> None:
    ben = await people.add()
    stream = services.stream
    session = await stream.open(ben.user, cursor=None, transport="poll", holder="w1")
    await stream.finish_poll(session, holder="w1", cursor=session.cursor)
    (parked,) = _parked_of(stream, ben.user.id)

    def closed_for_maintenance(user: object) -> None:
        raise Unavailable("maintenance")

    stream.admit = closed_for_maintenance
    with pytest.raises(Unavailable):
        await stream.open(ben.user, cursor=str(session.cursor), transport="poll", holder="w1")
    assert parked.sub.closed and not _parked_of(stream, ben.user.id)


async def test_a_member_removed_while_parked_gets_what_a_fresh_open_would(
    people: PeopleFactory, services: Services
) -> None:
    ann, ben, cat = await people.add(), await people.add(), await people.add()
    cid = await create_conversation(ann, ben, cat)
    other = await create_conversation(ann, ben)
    cursor = (await _poll(ben.http))["cursor"]
    await _send(ann, cid, "before")
    await _send(ann, other, "elsewhere")
    removed = await ann.http.delete(f"/v1/conversations/{cid}/members/{ben.user.id}")
    assert removed.status_code == 204, removed.text
    await _send(ann, cid, "after")
    fresh = people.client(await services.identity.do_issue_token(ben.user))
    hits = _parked_hits()

    parked_page = await _poll(ben.http, cursor)
    fresh_page = await _poll(fresh, cursor)
    assert _parked_hits() == hits + 1
    assert _bodies(parked_page, cid) == _bodies(fresh_page, cid) == []
    assert _bodies(parked_page, other) == _bodies(fresh_page, other) == ["elsewhere"]


async def test_draining_closes_parked_subscriptions(
    people: PeopleFactory, services: Services
) -> None:
    ben = await people.add()
    await _poll(ben.http)
    (parked,) = _parked_of(services.stream, ben.user.id)

    services.stream.drain()
    assert parked.sub.closed and not services.stream._parked


async def test_a_parked_subscription_of_a_token_that_expires_is_dropped(
    people: PeopleFactory, services: Services
) -> None:
    ben = await people.add()
    stream = services.stream
    expires = datetime.now(UTC) + timedelta(seconds=0.5)
    credential = Credential(user=ben.user, token_id=123_456, expires_at=expires)
    session = await stream.open(credential, cursor=None, transport="poll", holder="t")
    await stream.finish_poll(session, holder="t", cursor=session.cursor)
    (parked,) = _parked_of(stream, ben.user.id)

    await eventually(lambda: parked.sub.closed, what="the expired token's parked sub to go")
    assert not _parked_of(stream, ben.user.id)


async def test_a_widget_visitor_poll_continues_on_its_parked_subscription(
    people: PeopleFactory, services: Services
) -> None:
    admin, operator = await people.add(role=Role.ADMIN), await people.add()
    created = await admin.http.post(
        "/v1/admin/inboxes",
        json={
            "name": "Shop",
            "allowed_domains": ["shop.example.com"],
            "operators": [operator.user.name],
        },
    )
    assert created.status_code == 201, created.text
    site = people.client()
    site.headers["Origin"] = "https://shop.example.com"
    token = created.json()["widget_token"]
    started = (await site.post("/api/widget/bootstrap", json={"widget_token": token})).json()
    cid, visit = started["conversation_id"], {"session": started["session"]}
    cursor = (await site.get("/api/widget/poll", params={**visit, "timeout": 0})).json()["cursor"]
    hits = _parked_hits()
    bodies: list[str] = []
    for n in range(3):
        reply = {"client_msg_id": f"r{n}", "body": f"reply {n}"}
        await operator.http.post(f"/v1/conversations/{cid}/messages", json=reply)
        page = (
            await site.get("/api/widget/poll", params={**visit, "cursor": cursor, "timeout": 0})
        ).json()
        bodies += _bodies(page, cid)
        cursor = page["cursor"]

    assert bodies == ["reply 0", "reply 1", "reply 2"]
    assert _parked_hits() == hits + 3
    visit_id = (await services.widget.access_visit(started["session"])).session.id
    assert [key[1] for key in services.stream._parked] == [f"widget:{visit_id}"]  # not the secret


async def test_a_banned_user_is_not_served_from_a_parked_subscription(
    people: PeopleFactory, services: Services
) -> None:
    ann, mod = await people.add(), await people.add(role=Role.MODERATOR)
    cursor = (await _poll(ann.http))["cursor"]
    (parked,) = _parked_of(services.stream, ann.user.id)
    banned = await mod.http.post(
        "/v1/moderation/sanctions", json={"user_id": ann.user.id, "kind": "ban", "reason": "x"}
    )
    assert banned.status_code == 201, banned.text

    refused = await ann.http.get("/v1/stream/poll", params={"cursor": cursor, "timeout": 0})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ERR_BANNED"
    assert parked.sub.closed and not _parked_of(services.stream, ann.user.id)


async def test_a_parked_poll_reads_nothing_from_the_database(
    people: PeopleFactory, services: Services
) -> None:
    from sqlalchemy import event

    ben = await people.add()
    stream = services.stream
    credential = Credential(user=ben.user, token_id=42)
    session = await stream.open(credential, cursor=None, transport="poll", holder="t")
    await stream.finish_poll(session, holder="t", cursor=session.cursor)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engines = {services.db._reader.sync_engine, services.db._writer.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", seen)
    try:
        cursor = str(session.cursor)
        parked = await stream.open(credential, cursor=cursor, transport="poll", holder="t")
        assert statements == []
        fresh = await stream.open(credential, cursor=cursor, transport="poll", holder="other")
        assert statements  # the normal path: conversation ids, backlog
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", seen)
    await stream.close(parked)
    await stream.close(fresh)
