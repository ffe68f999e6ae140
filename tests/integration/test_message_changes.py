"""Editing and unsending messages over REST, on SQLite and PostgreSQL: versions, windows,
tombstones that keep their seq, who may do what, and the stream positions changes take."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from parley.assembly import Services
from parley.core.models import Role
from tests.conftest import PeopleFactory, Person, create_conversation


async def _send(person: Person, cid: int, body: str, **extra: Any) -> dict[str, Any]:
    response = await person.http.post(
        f"/v1/conversations/{cid}/messages",
        json={"client_msg_id": f"{body}-{id(extra)}", "body": body, **extra},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _url(cid: int, mid: int, tail: str = "") -> str:
    return f"/v1/conversations/{cid}/messages/{mid}{tail}"


async def _timeline(person: Person, cid: int) -> list[dict[str, Any]]:
    page = await person.http.get(f"/v1/conversations/{cid}/messages")
    return list(page.json()["messages"])


async def _positions(services: Services) -> tuple[list[int], int]:
    """Every stream position handed out (messages and changes), and the head."""
    store = services.stream.store
    head = await store.get_head()
    messages = await store.list_messages_between(0, head, limit=10_000)
    changes = await store.list_changes_between(0, head, limit=10_000)
    return sorted([m.pos for m in messages] + [c.pos for c in changes]), head


async def test_author_edits_and_every_version_is_kept(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    sent = await _send(alice, cid, "helo")

    first = await alice.http.patch(_url(cid, sent["id"]), json={"body": "hello"})
    second = await alice.http.patch(_url(cid, sent["id"]), json={"body": "hello, Bob"})

    assert first.status_code == second.status_code == 200
    seen_by_bob = (await _timeline(bob, cid))[0]
    assert seen_by_bob["body"] == "hello, Bob"
    assert seen_by_bob["seq"] == sent["seq"] and seen_by_bob["edited_at"] is not None
    history = (await bob.http.get(_url(cid, sent["id"], "/history"))).json()["versions"]
    assert [(v["version"], v["body"], v["current"]) for v in history] == [
        (1, "helo", False),
        (2, "hello", False),
        (3, "hello, Bob", True),
    ]
    assert {v["editor_id"] for v in history} == {alice.user.id}


async def test_retried_edit_with_the_same_client_op_id_changes_once(
    people: PeopleFactory, services: Services
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    sent = await _send(alice, cid, "draft")
    _, head_before = await _positions(services)

    answers = await asyncio.gather(
        *(
            alice.http.patch(_url(cid, sent["id"]), json={"body": "final", "client_op_id": "e1"})
            for _ in range(8)
        )
    )

    assert {a.status_code for a in answers} == {200}
    assert {a.json()["body"] for a in answers} == {"final"}
    _, head = await _positions(services)
    assert head == head_before + 1  # one change, one position
    history = (await alice.http.get(_url(cid, sent["id"], "/history"))).json()["versions"]
    assert [v["body"] for v in history] == ["draft", "final"]


async def test_an_edit_to_the_same_text_changes_nothing(
    people: PeopleFactory, services: Services
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    sent = await _send(alice, cid, "same")
    _, head_before = await _positions(services)

    answer = await alice.http.patch(_url(cid, sent["id"]), json={"body": "same"})

    assert answer.status_code == 200 and answer.json()["edited_at"] is None
    assert (await _positions(services))[1] == head_before


async def test_only_the_author_may_edit(people: PeopleFactory) -> None:
    alice, bob, eve = await people.add(), await people.add(), await people.add()
    admin = await people.add(role=Role.ADMIN)
    cid = await create_conversation(alice, bob, admin)
    sent = await _send(alice, cid, "mine")

    by_member = await bob.http.patch(_url(cid, sent["id"]), json={"body": "bob's now"})
    by_admin = await admin.http.patch(_url(cid, sent["id"]), json={"body": "admin's now"})
    by_outsider = await eve.http.patch(_url(cid, sent["id"]), json={"body": "eve's now"})

    assert by_member.status_code == by_admin.status_code == 403
    assert by_member.json()["error"]["code"] == "ERR_FORBIDDEN"
    assert by_outsider.status_code == 404
    assert (await _timeline(alice, cid))[0]["body"] == "mine"


async def test_edits_close_after_the_window_except_for_staff(
    people: PeopleFactory, services: Services
) -> None:
    alice, bob = await people.add(), await people.add()
    moderator = await people.add(role=Role.MODERATOR)
    cid = await create_conversation(alice, bob, moderator)
    late = await _send(alice, cid, "too late")
    staff = await _send(moderator, cid, "staff text")
    services.timeline.edit_window = timedelta(0)

    refused = await alice.http.patch(_url(cid, late["id"]), json={"body": "changed"})
    allowed = await moderator.http.patch(_url(cid, staff["id"]), json={"body": "changed"})

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "ERR_EDIT_WINDOW_CLOSED"
    assert allowed.status_code == 200 and allowed.json()["body"] == "changed"


async def test_an_edit_to_nothing_is_refused(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    sent = await _send(alice, cid, "text")

    answer = await alice.http.patch(_url(cid, sent["id"]), json={"body": "   "})

    assert answer.status_code == 422
    assert (await _timeline(alice, cid))[0]["body"] == "text"


async def test_unsend_leaves_a_tombstone_that_keeps_its_seq(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    first = await _send(alice, cid, "one")
    oops = await _send(alice, cid, "secret @" + bob.user.name)
    await alice.http.patch(_url(cid, oops["id"]), json={"body": "secret, edited"})
    await bob.http.put(_url(cid, oops["id"], "/reactions/%F0%9F%91%8D"))
    last = await _send(alice, cid, "three")

    answer = await alice.http.delete(_url(cid, oops["id"]))

    assert answer.status_code == 200
    timeline = await _timeline(bob, cid)
    assert [m["seq"] for m in timeline] == [first["seq"], oops["seq"], last["seq"]] == [1, 2, 3]
    tombstone = timeline[1]
    assert tombstone["deleted_at"] is not None and tombstone["deleted_by"] == "author"
    assert tombstone["body"] == "" and tombstone["reactions"] == []
    assert tombstone["mentions"] == [] and tombstone["edited_at"] is None
    history = await bob.http.get(_url(cid, oops["id"], "/history"))
    assert history.json()["versions"] == []
    again = await alice.http.delete(_url(cid, oops["id"]))
    assert again.status_code == 200 and again.json() == answer.json()


async def test_a_tombstone_cannot_be_edited_reacted_to_or_replied_to(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    gone = await _send(alice, cid, "gone")
    await alice.http.delete(_url(cid, gone["id"]))

    edit = await alice.http.patch(_url(cid, gone["id"]), json={"body": "back"})
    react = await bob.http.put(_url(cid, gone["id"], "/reactions/ok"))
    reply = await bob.http.post(
        f"/v1/conversations/{cid}/messages",
        json={"client_msg_id": "r", "body": "re", "reply_to_id": gone["id"]},
    )

    for answer in (edit, react, reply):
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "ERR_MESSAGE_DELETED"


async def test_unsending_removes_its_files(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    upload = await alice.http.post(
        f"/v1/conversations/{cid}/attachments", files={"file": ("plan.txt", b"the plan")}
    )
    attachment = upload.json()["id"]
    sent = await _send(alice, cid, "see file", attachments=[attachment])
    assert (await bob.http.get(f"/v1/attachments/{attachment}")).status_code == 200

    await alice.http.delete(_url(cid, sent["id"]))

    assert (await bob.http.get(f"/v1/attachments/{attachment}")).status_code == 404
    assert (await _timeline(bob, cid))[0]["attachments"] == []


async def test_a_file_another_message_still_carries_stays(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    upload = await alice.http.post(
        f"/v1/conversations/{cid}/attachments", files={"file": ("plan.txt", b"the plan")}
    )
    attachment = upload.json()["id"]
    first = await _send(alice, cid, "file", attachments=[attachment])
    await _send(alice, cid, "same file again", attachments=[attachment])

    await alice.http.delete(_url(cid, first["id"]))

    assert (await bob.http.get(f"/v1/attachments/{attachment}")).status_code == 200


async def test_staff_delete_anyones_message_members_only_their_own(
    people: PeopleFactory,
) -> None:
    alice, bob = await people.add(), await people.add()
    moderator = await people.add(role=Role.MODERATOR)
    cid = await create_conversation(alice, bob, moderator)
    sent = await _send(alice, cid, "rude")

    by_member = await bob.http.delete(_url(cid, sent["id"]))
    by_staff = await moderator.http.delete(_url(cid, sent["id"]), params={"reason": "abuse"})

    assert by_member.status_code == 403
    assert by_staff.status_code == 200 and by_staff.json()["deleted_by"] == "staff"
    assert "abuse" not in by_staff.text  # the reason is kept for moderation, not shown


async def test_moderation_and_erasure_reuse_the_tombstone_path(
    people: PeopleFactory, services: Services
) -> None:
    alice, bob = await people.add(), await people.add()
    moderator = await people.add(role=Role.MODERATOR)  # not a member
    cid = await create_conversation(alice, bob)
    flagged = await _send(bob, cid, "flagged")
    mine = [await _send(alice, cid, f"personal {n}") for n in range(3)]

    removed = await services.timeline.do_delete_message(
        moderator.user, cid, flagged["id"], reason="spam", by_staff=True
    )
    erased = await services.timeline.do_delete_messages_from(alice.user.id, reason="erasure")

    assert removed.changed and removed.message.deleted_by is not None
    assert removed.message.deleted_by.value == "staff"
    assert erased == 3
    timeline = await _timeline(bob, cid)
    assert [m["deleted_by"] for m in timeline] == ["staff", "system", "system", "system"]
    assert [m["seq"] for m in timeline] == [1, 2, 3, 4]
    assert all(m["body"] == "" for m in timeline)
    assert len(mine) == 3


async def test_changes_take_gapless_stream_positions_after_the_messages(
    people: PeopleFactory, services: Services
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    sent = [await _send(alice, cid, f"m{n}") for n in range(4)]

    await asyncio.gather(
        alice.http.patch(_url(cid, sent[0]["id"]), json={"body": "edited"}),
        alice.http.delete(_url(cid, sent[1]["id"])),
        bob.http.put(_url(cid, sent[2]["id"], "/reactions/ok")),
        _send(bob, cid, "more"),
        bob.http.put(_url(cid, sent[3]["id"], "/reactions/ok")),
    )

    positions, head = await _positions(services)
    assert positions == list(range(1, head + 1))
    seqs = [m["seq"] for m in await _timeline(alice, cid)]
    assert seqs == [1, 2, 3, 4, 5]


async def test_get_one_message_is_for_members_only(people: PeopleFactory) -> None:
    alice, bob, eve = await people.add(), await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    other = await create_conversation(eve)
    sent = await _send(alice, cid, "hi")

    mine = await bob.http.get(_url(cid, sent["id"]))
    outsider = await eve.http.get(_url(cid, sent["id"]))
    wrong_conversation = await eve.http.get(_url(other, sent["id"]))

    assert mine.status_code == 200 and mine.json()["body"] == "hi"
    assert outsider.status_code == wrong_conversation.status_code == 404
