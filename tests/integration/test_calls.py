"""Calls over REST on SQLite and PostgreSQL: who may do what, call states, busy devices, glare,
the ring timeout, timeline records, and bad input. (Relay over the stream across two nodes:
test_calls_cluster.py; a real TURN server: test_turn.py; browsers: tests/e2e/test_calls.py.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from parley.core.models import Role
from parley.settings import Settings
from tests.conftest import PeopleFactory, Person, create_conversation
from tests.integration.stored import assert_error, what_is_stored
from tests.support.waiting import eventually

TURN_SECRET = "turn-shared-secret"
SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@pytest.fixture
def ring_seconds() -> int:
    return 60  # the ring-timeout test asks for 1 s


@pytest.fixture
def settings(database_url: str, tmp_path: Path, ring_seconds: int) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        log_json=False,
        sqlite_synchronous="NORMAL",
        calls_stun_urls=["stun:127.0.0.1:3478"],
        calls_turn_urls=["turn:127.0.0.1:3478?transport=udp"],
        calls_turn_secret=TURN_SECRET,
        calls_ring_seconds=ring_seconds,
        calls_sweep_seconds=0.05,
    )


def new_call_id() -> str:
    return "c" + uuid.uuid4().hex


async def offer(
    caller: Person, conversation_id: int, *, device: str = "tab-1", **extra: Any
) -> Any:
    body = {"call_id": new_call_id(), "device_id": device, "sdp": SDP, **extra}
    return await caller.http.post(f"/v1/conversations/{conversation_id}/calls", json=body)


async def act(
    person: Person, call_id: str, action: str, device: str = "tab-1", **extra: Any
) -> Any:
    return await person.http.post(
        f"/v1/calls/{call_id}/{action}", json={"device_id": device, **extra}
    )


async def timeline(person: Person, conversation_id: int) -> list[dict[str, Any]]:
    response = await person.http.get(f"/v1/conversations/{conversation_id}/messages")
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


async def test_config_hands_each_user_turn_credentials_that_expire(people: PeopleFactory) -> None:
    alice = await people.add()

    before = int(time.time())
    config = (await alice.http.get("/v1/calls/config")).json()
    anonymous = await people.client().get("/v1/calls/config")

    stun, turn = config["ice_servers"]
    assert stun == {"urls": ["stun:127.0.0.1:3478"], "username": None, "credential": None}
    expiry, user_id = turn["username"].split(":")
    assert user_id == str(alice.user.id)
    assert before + 3600 <= int(expiry) <= int(time.time()) + 3600
    expected = hmac.new(TURN_SECRET.encode(), turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(expected).decode()
    assert config["expires_at"] == int(expiry) and config["ttl_seconds"] == 3600
    assert TURN_SECRET not in str(config)
    assert_error(anonymous, 401, "ERR_UNAUTHENTICATED")


async def test_a_direct_call_rings_is_answered_and_hung_up_and_lands_in_the_timeline(
    people: PeopleFactory,
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob, kind="direct")

    placed = await offer(alice, cid)
    call = placed.json()["call"]
    answered = await act(bob, call["id"], "answer", device="phone", sdp=SDP)
    candidate = {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"}
    ice = await act(bob, call["id"], "ice", device="phone", candidate=candidate)
    hung_up = await act(alice, call["id"], "hangup")

    assert placed.status_code == 201, placed.text
    assert call["state"] == "ringing" and call["callee_id"] == bob.user.id
    assert answered.json()["call"]["state"] == "active", answered.text
    assert answered.json()["call"]["callee_device"] == "phone"
    assert ice.status_code == 200, ice.text
    ended = hung_up.json()["call"]
    assert (ended["state"], ended["end_reason"]) == ("ended", "hangup")
    assert ended["duration_seconds"] is not None
    record = (await timeline(bob, cid))[-1]
    assert record["client_msg_id"] == f"call:{call['id']}"
    assert record["sender_id"] == alice.user.id and record["body"].startswith("📞 Call · 0:0")
    assert record["metadata"]["call"]["state"] == "ended"
    assert [m["seq"] for m in await timeline(alice, cid)] == [1]
    listed = (await bob.http.get("/v1/calls")).json()["calls"]
    assert [c["id"] for c in listed] == [call["id"]]
    assert (await bob.http.get("/v1/calls", params={"live": "true"})).json()["calls"] == []


async def test_reject_busy_and_cancel_end_a_ringing_call_with_their_reason(
    people: PeopleFactory,
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob, kind="direct")

    outcomes = []
    for actor, action, reason in (
        (bob, "reject", "rejected"),
        (bob, "busy", "busy"),
        (alice, "hangup", "cancelled"),
        (bob, "hangup", "rejected"),
    ):
        call_id = (await offer(alice, cid)).json()["call"]["id"]
        ended = (await act(actor, call_id, action)).json()["call"]
        outcomes.append((ended["state"], ended["end_reason"]))
        assert ended["end_reason"] == reason

    assert outcomes == [
        ("ended", "rejected"),
        ("ended", "busy"),
        ("ended", "cancelled"),
        ("ended", "rejected"),
    ]
    bodies = [m["body"] for m in await timeline(alice, cid)]
    assert bodies == [
        "📞 Call declined",
        "📞 Call not answered (busy)",
        "📞 Call cancelled",
        "📞 Call declined",
    ]


@pytest.mark.parametrize("ring_seconds", [1])
async def test_an_unanswered_call_is_missed_when_it_has_rung_long_enough(
    people: PeopleFactory,
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob, kind="direct")
    call_id = (await offer(alice, cid)).json()["call"]["id"]

    async def state() -> str:
        return str((await bob.http.get(f"/v1/calls/{call_id}")).json()["call"]["state"])

    assert await eventually(lambda: _is(state(), "missed"), what="the call to be missed")
    late = await act(bob, call_id, "answer", sdp=SDP)
    records = await eventually(lambda: timeline(bob, cid), what="the missed-call record")
    assert_error(late, 409, "ERR_CALL_ENDED")
    assert records[-1]["body"] == "📞 Missed call"
    assert records[-1]["metadata"]["call"]["end_reason"] == "timeout"


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)


async def test_only_the_parties_see_or_touch_a_call(people: PeopleFactory) -> None:
    alice, bob, carol = await people.add(), await people.add(), await people.add()
    room = await create_conversation(alice, bob, carol, kind="room")
    call_id = (await offer(alice, room, to_user_id=bob.user.id)).json()["call"]["id"]
    before = await what_is_stored(alice, room)

    peeks = [
        await carol.http.get(f"/v1/calls/{call_id}"),
        await act(carol, call_id, "answer", sdp=SDP),
        await act(carol, call_id, "hangup"),
        await act(carol, call_id, "ice", candidate={"candidate": ""}),
    ]
    outsider = await people.add()
    ring_outsider = await offer(alice, room, to_user_id=outsider.user.id)
    not_member = await offer(outsider, room, to_user_id=alice.user.id)

    for response in peeks:
        assert_error(response, 404, "ERR_NOT_FOUND")
    assert_error(ring_outsider, 422, "ERR_VALIDATION")
    assert_error(not_member, 404, "ERR_NOT_FOUND")
    assert (await carol.http.get("/v1/calls")).json()["calls"] == []
    assert (await bob.http.get(f"/v1/calls/{call_id}")).json()["call"]["state"] == "ringing"
    assert await what_is_stored(alice, room) == before


async def test_only_the_callee_answers_and_once(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob, kind="direct")
    call_id = (await offer(alice, cid)).json()["call"]["id"]

    by_caller = await act(alice, call_id, "answer", sdp=SDP)
    first = await act(bob, call_id, "answer", device="laptop", sdp=SDP)
    again = await act(bob, call_id, "answer", device="laptop", sdp=SDP)
    elsewhere = await act(bob, call_id, "answer", device="phone", sdp=SDP)
    reject_active = await act(bob, call_id, "reject", device="phone")
    ice_from_other_device = await act(
        bob, call_id, "ice", device="phone", candidate={"candidate": ""}
    )

    assert_error(by_caller, 409, "ERR_CALL_STATE")
    assert first.status_code == 200 and again.status_code == 200, again.text
    assert_error(elsewhere, 409, "ERR_CALL_STATE")
    assert_error(reject_active, 409, "ERR_CALL_STATE")
    assert_error(ice_from_other_device, 409, "ERR_CALL_STATE")


async def test_a_device_is_in_one_live_call_at_a_time(people: PeopleFactory) -> None:
    alice, bob, carol = await people.add(), await people.add(), await people.add()
    with_bob = await create_conversation(alice, bob, kind="direct")
    with_carol = await create_conversation(alice, carol, kind="direct")
    first = (await offer(alice, with_bob, device="tab")).json()["call"]

    second_same_device = await offer(alice, with_carol, device="tab")
    second_other_device = await offer(alice, with_carol, device="other-tab")
    carol_call = second_other_device.json()["call"]
    await act(bob, first["id"], "answer", device="desk", sdp=SDP)
    # bob's "desk" is in a call now: answering carol's call from it is refused, from another not.
    bob_to_carol = await create_conversation(bob, carol, kind="direct")
    ringing_bob_desk = await offer(carol, bob_to_carol, device="c1")
    busy_answer = await act(bob, ringing_bob_desk.json()["call"]["id"], "answer", "desk", sdp=SDP)
    await act(alice, first["id"], "hangup", device="tab")
    after_hangup = await offer(alice, with_carol, device="tab")

    error = assert_error(second_same_device, 409, "ERR_CALL_BUSY")
    assert error["details"] == {"call_id": first["id"]}
    assert second_other_device.status_code == 201, second_other_device.text
    assert_error(busy_answer, 409, "ERR_CALL_BUSY")
    # alice and carol already have a call ringing between them (from "other-tab").
    assert_error(after_hangup, 409, "ERR_CALL_BUSY")
    await act(alice, carol_call["id"], "hangup", device="other-tab")
    assert (await offer(alice, with_carol, device="tab")).status_code == 201


async def test_calling_each_other_at_once_makes_one_call(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob, kind="direct")

    from_alice = await offer(alice, cid, device="a")
    from_bob = await offer(bob, cid, device="b")

    call = from_alice.json()["call"]
    error = assert_error(from_bob, 409, "ERR_CALL_BUSY")
    assert error["details"] == {"call_id": call["id"]}
    # bob sees the incoming call and answers it instead.
    assert (await act(bob, call["id"], "answer", device="b", sdp=SDP)).status_code == 200


async def test_an_offer_retried_with_its_call_id_is_the_same_call(people: PeopleFactory) -> None:
    alice, bob, carol = await people.add(), await people.add(), await people.add()
    cid = await create_conversation(alice, bob, kind="direct")
    body = {"call_id": new_call_id(), "device_id": "tab", "sdp": SDP}

    first = await alice.http.post(f"/v1/conversations/{cid}/calls", json=body)
    retry = await alice.http.post(f"/v1/conversations/{cid}/calls", json=body)
    with_carol = await create_conversation(carol, alice, kind="direct")
    stolen = await carol.http.post(
        f"/v1/conversations/{with_carol}/calls", json={**body, "device_id": "x"}
    )

    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json() == first.json()
    assert_error(stolen, 409, "ERR_CONFLICT")
    assert len((await bob.http.get("/v1/calls")).json()["calls"]) == 1


async def test_bad_signals_are_refused_with_a_code(people: PeopleFactory) -> None:
    alice, bob, carol = await people.add(), await people.add(), await people.add()
    direct = await create_conversation(alice, bob, kind="direct")
    group = await create_conversation(alice, bob, carol)
    base = {"call_id": new_call_id(), "device_id": "tab", "sdp": SDP}
    url = f"/v1/conversations/{direct}/calls"

    cases = {
        "no callee in a group": await alice.http.post(
            f"/v1/conversations/{group}/calls", json=base
        ),
        "self": await alice.http.post(url, json={**base, "to_user_id": alice.user.id}),
        "short id": await alice.http.post(url, json={**base, "call_id": "x"}),
        "bad device": await alice.http.post(url, json={**base, "device_id": "a b"}),
        "empty sdp": await alice.http.post(url, json={**base, "sdp": ""}),
        "huge sdp": await alice.http.post(url, json={**base, "sdp": "a" * 70_000}),
        "nul in sdp": await alice.http.post(url, json={**base, "sdp": "v=0\x00"}),
        "media": await alice.http.post(url, json={**base, "media": "hologram"}),
        "extra field": await alice.http.post(url, json={**base, "ttl": 5}),
    }
    call_id = (await alice.http.post(url, json=base)).json()["call"]["id"]
    bad_candidate = await act(alice, call_id, "ice", device="tab", candidate={"sdpMid": "0"})
    bad_action = await act(bob, call_id, "explode")
    bad_path = await bob.http.get("/v1/calls/../../etc")

    for name, response in cases.items():
        assert response.status_code in (400, 413, 422), (name, response.text)
        assert response.json()["error"]["code"].startswith("ERR_"), name
    assert_error(cases["nul in sdp"], 422, "ERR_INVALID_TEXT")
    assert_error(bad_candidate, 422, "ERR_VALIDATION")
    assert bad_action.status_code == 422
    assert bad_path.status_code == 404
    assert (await bob.http.get(f"/v1/calls/{call_id}")).json()["call"]["state"] == "ringing"


async def test_members_cannot_forge_call_records(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob, kind="direct")

    forged = await alice.http.post(
        f"/v1/conversations/{cid}/messages",
        json={"client_msg_id": "m1", "body": "📞 Missed call", "metadata": {"call": {"x": 1}}},
    )

    assert_error(forged, 422, "ERR_VALIDATION")
    assert await timeline(bob, cid) == []


async def test_an_admin_has_no_say_in_other_peoples_calls(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    admin = await people.add(role=Role.ADMIN)
    cid = await create_conversation(alice, bob, kind="direct")
    call_id = (await offer(alice, cid)).json()["call"]["id"]

    assert_error(await admin.http.get(f"/v1/calls/{call_id}"), 404, "ERR_NOT_FOUND")
    assert_error(await act(admin, call_id, "hangup"), 404, "ERR_NOT_FOUND")
