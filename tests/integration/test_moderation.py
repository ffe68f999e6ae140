"""Moderation over REST on SQLite and PostgreSQL: the filter pipeline's outcomes, reports and
the queue, moderators' decisions, sanctions, rules, roles, and the audit entry of each action."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from parley.app import create_app
from parley.assembly import Services
from parley.core.models import ConversationKind, Role
from parley.settings import Settings
from tests.conftest import PeopleFactory, Person, create_conversation
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("backend")


async def _send(person: Person, cid: int, body: str, cmid: str | None = None) -> httpx.Response:
    return await person.http.post(
        f"/v1/conversations/{cid}/messages",
        json={"client_msg_id": cmid or f"m-{time.monotonic_ns()}", "body": body},
    )


async def _bodies(person: Person, cid: int) -> list[str]:
    page = await person.http.get(f"/v1/conversations/{cid}/messages")
    assert page.status_code == 200, page.text
    return [m["body"] for m in page.json()["messages"]]


async def _rule(moderator: Person, **fields: Any) -> dict[str, Any]:
    response = await moderator.http.post("/v1/moderation/rules", json=fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _queue(moderator: Person, **params: Any) -> list[dict[str, Any]]:
    response = await moderator.http.get("/v1/moderation/queue", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def _act(moderator: Person, item_id: int, **body: Any) -> httpx.Response:
    return await moderator.http.post(f"/v1/moderation/queue/{item_id}/actions", json=body)


async def _audit(services: Services, action: str) -> list[dict[str, Any]]:
    from parley.core.audit import AuditFilter
    from parley.services.audit import entry_json

    entries = await services.audit.search(None, AuditFilter(action=action, limit=100))
    return [entry_json(e) for e in entries]


@pytest.fixture
async def cast(people: PeopleFactory) -> dict[str, Person]:
    return {
        "ann": await people.add(),
        "bob": await people.add(),
        "mod": await people.add(role=Role.MODERATOR),
        "admin": await people.add(role=Role.ADMIN),
    }


# -- filter outcomes -----------------------------------------------------------------------------


async def test_a_held_send_waits_for_a_moderator_and_approval_delivers_it(
    cast: dict[str, Person], services: Services
) -> None:
    ann, bob, mod = cast["ann"], cast["bob"], cast["mod"]
    cid = await create_conversation(ann, bob)
    await _rule(
        mod,
        name="scam words",
        kind="words",
        verdict="hold_for_review",
        config={"words": ["free money", "Криптовалюта"]},
    )
    assert (await _send(ann, cid, "hello")).status_code == 201

    held = await _send(ann, cid, "get FREE MONEY now", cmid="c-held")
    assert held.status_code == 409
    error = held.json()["error"]
    assert error["code"] == "ERR_HELD_FOR_REVIEW"
    assert "blocked word" in error["message"]
    # Not in the timeline, for anyone; a retry of the same send is the same answer, one item.
    assert await _bodies(bob, cid) == ["hello"]
    again = await _send(ann, cid, "get FREE MONEY now", cmid="c-held")
    assert again.status_code == 409 and again.json()["error"]["details"] == error["details"]
    # Any script, whole words only: "криптовалютами" is another word.
    assert (await _send(ann, cid, "купи криптовалюту? нет, Криптовалюта!")).status_code == 409
    assert (await _send(ann, cid, "торгую криптовалютами")).status_code == 201

    items = await _queue(mod, kind="held")
    assert [i["body"] for i in items] == [
        "get FREE MONEY now",
        "купи криптовалюту? нет, Криптовалюта!",
    ]
    first = items[0]
    assert first["rule"] == "scam words" and first["sender"]["name"] == ann.user.name

    approved = await _act(mod, first["id"], action="approve", reason="it was a joke")
    assert approved.status_code == 200, approved.text
    assert approved.json()["resolution"] == "approved"
    assert await _bodies(bob, cid) == ["hello", "торгую криптовалютами", "get FREE MONEY now"]
    # The sender's retry now gets the delivered message, as for any retried send.
    retried = await _send(ann, cid, "get FREE MONEY now", cmid="c-held")
    assert retried.status_code == 200 and retried.json()["seq"] == 3

    (entry,) = await _audit(services, "moderation.approve")
    assert entry["actor"] == mod.user.name and entry["reason"] == "it was a joke"
    assert entry["target_kind"] == "moderation_item" and entry["target_id"] == str(first["id"])
    assert entry["before"] == {"status": "open", "tier": 1}
    assert entry["after"]["resolution"] == "approved"


async def test_a_rejected_send_is_refused_with_its_code_and_nothing_is_stored(
    cast: dict[str, Person],
) -> None:
    ann, bob, mod = cast["ann"], cast["bob"], cast["mod"]
    cid = await create_conversation(ann, bob)
    await _rule(
        mod,
        name="card numbers",
        kind="regex",
        verdict="reject",
        config={"patterns": [r"\b(?:\d[ -]?){13,16}\b"]},
    )
    await _rule(
        mod,
        name="no shady links",
        kind="links",
        verdict="reject",
        config={"mode": "block_domains", "domains": ["evil.example"]},
    )

    card = await _send(ann, cid, "my card is 4111 1111 1111 1111")
    link = await _send(ann, cid, "see https://login.evil.example/x")
    fine = await _send(ann, cid, "see https://docs.example.org")

    assert card.status_code == 422 and card.json()["error"]["code"] == "ERR_MESSAGE_REJECTED"
    assert card.json()["error"]["details"] == {"rule": "regex"}
    assert link.status_code == 422 and "blocked site" in link.json()["error"]["message"]
    assert fine.status_code == 201
    assert await _bodies(bob, cid) == ["see https://docs.example.org"]
    assert await _queue(mod) == []


async def test_rules_apply_only_to_their_conversation_kind(cast: dict[str, Person]) -> None:
    ann, bob, mod = cast["ann"], cast["bob"], cast["mod"]
    room = await create_conversation(ann, bob, kind="room")
    direct = await create_conversation(ann, bob, kind="direct")
    await _rule(
        mod,
        name="no links in rooms",
        kind="links",
        verdict="reject",
        scope="conversation_kind",
        scope_value="room",
        config={"mode": "any"},
    )

    assert (await _send(ann, room, "www.shop.example")).status_code == 422
    assert (await _send(ann, direct, "www.shop.example")).status_code == 201


async def test_attachment_rules_judge_the_sniffed_type(cast: dict[str, Person]) -> None:
    ann, bob, mod = cast["ann"], cast["bob"], cast["mod"]
    cid = await create_conversation(ann, bob)
    await _rule(
        mod,
        name="no executables",
        kind="attachments",
        verdict="hold_for_review",
        config={"extensions": ["exe"], "content_types": ["application/x-msdownload"]},
    )
    program = await ann.http.post(
        f"/v1/conversations/{cid}/attachments",
        files={"file": ("setup.exe", b"MZ\x90\x00" + b"\x00" * 200, "application/octet-stream")},
    )
    picture = await ann.http.post(
        f"/v1/conversations/{cid}/attachments", files={"file": ("notes.txt", b"just text")}
    )
    assert program.status_code == 201 and picture.status_code == 201

    held = await ann.http.post(
        f"/v1/conversations/{cid}/messages",
        json={"client_msg_id": "a1", "body": "", "attachments": [program.json()["id"]]},
    )
    passed = await ann.http.post(
        f"/v1/conversations/{cid}/messages",
        json={"client_msg_id": "a2", "body": "", "attachments": [picture.json()["id"]]},
    )

    assert held.status_code == 409 and held.json()["error"]["code"] == "ERR_HELD_FOR_REVIEW"
    assert passed.status_code == 201


async def test_a_flood_rule_refuses_bursts_and_repeats(cast: dict[str, Person]) -> None:
    ann, bob, mod = cast["ann"], cast["bob"], cast["mod"]
    cid = await create_conversation(ann, bob)
    await _rule(
        mod,
        name="flood",
        kind="flood",
        verdict="reject",
        config={"max_messages": 5, "max_repeats": 2, "per_seconds": 60},
    )

    answers = [(await _send(ann, cid, "same again")).status_code for _ in range(3)]
    assert answers == [201, 201, 429]
    # Attempts count, refused ones too: a sender hammering away stays refused.
    burst = [(await _send(ann, cid, f"line {i}")).status_code for i in range(3)]
    assert burst == [201, 201, 429]
    refused = await _send(ann, cid, "one more")
    assert refused.json()["error"]["code"] == "ERR_RATE_LIMITED"
    assert int(refused.headers["retry-after"]) >= 1
    # Counted per sender and conversation: bob is not slowed down by ann.
    assert (await _send(bob, cid, "hi")).status_code == 201


# -- the external classifier, a real HTTP server ---------------------------------------------------


class _Classifier(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        request["authorization"] = self.headers.get("authorization")
        type(self).seen.append(request)
        text = request["text"]
        if "slow" in text:
            time.sleep(1.5)
        if "broken" in text:
            self.send_response(500)
            self.end_headers()
            return
        score = 0.99 if "toxic" in text else 0.8 if "rude" in text else 0.05
        body = json.dumps({"score": score, "labels": ["insult"] if score > 0.5 else []}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def classifier_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Classifier)
    _Classifier.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/classify"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def classified_app(settings: Settings, classifier_url: str) -> Any:
    configured = settings.model_copy(
        update={
            "moderation_classifier_url": classifier_url,
            "moderation_classifier_token": "clf-secret",
            "moderation_classifier_timeout_seconds": 0.5,
        }
    )
    application = create_app(configured)
    async with application.router.lifespan_context(application):
        yield application


async def test_the_external_classifier_scores_decide_hold_or_reject(
    classified_app: FastAPI, tmp_path: Path
) -> None:
    people = PeopleFactory(classified_app, classified_app.state.services)
    try:
        ann, bob = await people.add(), await people.add()
        mod = await people.add(role=Role.MODERATOR)
        cid = await create_conversation(ann, bob, kind="group")
        await _rule(
            mod,
            name="toxicity",
            kind="classifier",
            verdict="hold_for_review",
            config={"hold_at": 0.7, "reject_at": 0.95, "on_error": "hold_for_review"},
        )

        assert (await _send(ann, cid, "have a nice day")).status_code == 201
        assert (await _send(ann, cid, "you are rude")).status_code == 409
        toxic = await _send(ann, cid, "you are toxic")
        assert toxic.status_code == 422 and toxic.json()["error"]["details"] == {
            "rule": "classifier"
        }
        # Down or too slow: this rule's on_error holds the message rather than letting it by.
        assert (await _send(ann, cid, "broken classifier")).status_code == 409
        assert (await _send(ann, cid, "slow classifier")).status_code == 409

        request = _Classifier.seen[0]
        assert request["text"] == "have a nice day" and request["conversation_id"] == cid
        assert request["conversation_kind"] == "group" and request["sender_id"] == ann.user.id
        assert request["authorization"] == "Bearer clf-secret"
        assert await _bodies(bob, cid) == ["have a nice day"]
        reasons = sorted(i["body"] for i in await _queue(mod))
        assert reasons == ["broken classifier", "slow classifier", "you are rude"]
    finally:
        await people.close()


async def test_a_classifier_rule_needs_a_configured_classifier(cast: dict[str, Person]) -> None:
    response = await cast["mod"].http.post(
        "/v1/moderation/rules",
        json={"name": "x", "kind": "classifier", "config": {"hold_at": 0.5}},
    )
    assert response.status_code == 422
    assert "PARLEY_MODERATION_CLASSIFIER_URL" in response.json()["error"]["message"]


# -- reports and the queue -------------------------------------------------------------------------


async def test_reports_of_one_message_make_one_item_and_repeats_count_once(
    cast: dict[str, Person], people: PeopleFactory, services: Services
) -> None:
    ann, bob, mod = cast["ann"], cast["bob"], cast["mod"]
    cat = await people.add()
    cid = await create_conversation(ann, bob, cat)
    sent = (await _send(ann, cid, "buy my stuff")).json()

    url = f"/v1/conversations/{cid}/messages/{sent['id']}/report"
    first = await bob.http.post(url, json={"reason": "spam", "note": "third time today"})
    repeat = await bob.http.post(url, json={"reason": "spam"})
    other = await cat.http.post(url, json={"reason": "abuse"})
    own = await ann.http.post(url, json={"reason": "spam"})
    outsider = await cast["admin"].http.post(url, json={"reason": "spam"})
    bad = await cat.http.post(url, json={"reason": "boring"})

    assert first.status_code == 201 and first.json()["reported"] is True
    assert repeat.json() == {"reported": False, "item_id": first.json()["item_id"]}
    assert other.json()["item_id"] == first.json()["item_id"]
    assert own.status_code == 400
    assert outsider.status_code == 404  # not a member: as if there were no such conversation
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "ERR_INVALID_VALUE"
    (item,) = await _queue(mod)
    assert item["kind"] == "report" and item["reports"] == 2 and item["body"] == "buy my stuff"
    assert [r["reason"] for r in item["report_details"]] == ["spam", "abuse"]
    assert item["report_details"][0]["note"] == "third time today"

    dismissed = await _act(mod, item["id"], action="approve", reason="not spam")
    assert dismissed.json()["resolution"] == "approved"
    assert await _bodies(bob, cid) == ["buy my stuff"]
    assert await _queue(mod) == []
    assert len(await _audit(services, "moderation.approve")) == 1


async def test_an_item_is_decided_once(cast: dict[str, Person]) -> None:
    ann, bob, mod, admin = cast["ann"], cast["bob"], cast["mod"], cast["admin"]
    cid = await create_conversation(ann, bob)
    await _rule(
        mod, name="hold all", kind="regex", verdict="hold_for_review", config={"patterns": ["."]}
    )
    await _send(ann, cid, "anything")
    (item,) = await _queue(mod)

    answers = await asyncio.gather(
        _act(mod, item["id"], action="approve"), _act(admin, item["id"], action="remove")
    )

    assert sorted(a.status_code for a in answers) == [200, 409]
    winner = next(a for a in answers if a.status_code == 200).json()["resolution"]
    assert await _bodies(bob, cid) == (["anything"] if winner == "approved" else [])


async def test_escalated_items_are_decided_by_admins_only(
    cast: dict[str, Person], services: Services
) -> None:
    ann, bob, mod, admin = cast["ann"], cast["bob"], cast["mod"], cast["admin"]
    cid = await create_conversation(ann, bob)
    sent = (await _send(ann, cid, "a threat?")).json()
    await bob.http.post(
        f"/v1/conversations/{cid}/messages/{sent['id']}/report", json={"reason": "illegal"}
    )
    (item,) = await _queue(mod)

    no_reason = await _act(mod, item["id"], action="escalate")
    escalated = await _act(mod, item["id"], action="escalate", reason="legal should look")
    refused = await _act(mod, item["id"], action="approve")
    again = await _act(mod, item["id"], action="escalate", reason="again")

    assert no_reason.status_code == 422
    assert escalated.status_code == 200 and escalated.json()["tier"] == 2
    assert escalated.json()["escalated"] is True and escalated.json()["status"] == "open"
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ERR_ESCALATED"
    assert again.status_code == 403
    assert [i["id"] for i in await _queue(admin, tier=2)] == [item["id"]]
    decided = await _act(admin, item["id"], action="approve", reason="fine after all")
    assert decided.status_code == 200
    (entry,) = await _audit(services, "moderation.escalate")
    assert (
        entry["after"] == {"status": "open", "tier": 2} and entry["reason"] == "legal should look"
    )


async def test_only_moderators_and_admins_reach_the_queue_rules_and_sanctions(
    cast: dict[str, Person], people: PeopleFactory
) -> None:
    operator = await people.add(role=Role.OPERATOR)
    dispute_ops = await people.add(role=Role.DISPUTE_OPS)
    for person in (cast["ann"], operator, dispute_ops):
        for method, path, body in (
            ("GET", "/v1/moderation/queue", None),
            ("GET", "/v1/moderation/backlog", None),
            ("GET", "/v1/moderation/rules", None),
            (
                "POST",
                "/v1/moderation/rules",
                {"name": "x", "kind": "words", "config": {"words": ["x"]}},
            ),
            ("GET", "/v1/moderation/sanctions", None),
            ("POST", "/v1/moderation/sanctions", {"user_id": cast["bob"].user.id, "kind": "ban"}),
        ):
            response = await person.http.request(method, path, json=body)
            assert response.status_code == 403, (person.user.role, path, response.text)
            assert response.json()["error"]["code"] == "ERR_FORBIDDEN"
    anonymous = await people.client().get("/v1/moderation/queue")
    assert anonymous.status_code == 401


async def test_bad_rules_are_refused_with_a_clear_message(cast: dict[str, Person]) -> None:
    mod = cast["mod"]
    cases = [
        ({"name": "r", "kind": "regex", "config": {"patterns": ["(unclosed"]}}, 422, "RE2"),
        ({"name": "r", "kind": "words", "config": {}}, 422, "config.words"),
        ({"name": "r", "kind": "telepathy", "config": {}}, 400, "kind"),
        ({"name": "r", "kind": "words", "verdict": "allow", "config": {"words": ["a"]}}, 400, ""),
        ({"name": "r", "kind": "links", "config": {"mode": "allow_domains"}}, 422, "domains"),
        ({"name": "r", "kind": "flood", "config": {"max_messages": 3}}, 422, "per_seconds"),
        (
            {
                "name": "r",
                "kind": "words",
                "scope": "conversation_kind",
                "scope_value": "x",
                "config": {"words": ["a"]},
            },
            400,
            "scope_value",
        ),
    ]
    for body, status, words in cases:
        response = await mod.http.post("/v1/moderation/rules", json=body)
        assert response.status_code == status, (body, response.text)
        assert words in response.json()["error"]["message"], response.text
    await _rule(mod, name="dup", kind="words", config={"words": ["a"]})
    taken = await mod.http.post(
        "/v1/moderation/rules", json={"name": "dup", "kind": "words", "config": {"words": ["b"]}}
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "ERR_NAME_TAKEN"


async def test_rules_change_and_switch_off_at_once_and_every_change_is_audited(
    cast: dict[str, Person], services: Services
) -> None:
    ann, bob, mod = cast["ann"], cast["bob"], cast["mod"]
    cid = await create_conversation(ann, bob)
    rule = await _rule(mod, name="w", kind="words", verdict="reject", config={"words": ["darn"]})
    assert (await _send(ann, cid, "darn")).status_code == 422

    changed = await mod.http.patch(
        f"/v1/moderation/rules/{rule['id']}", json={"config": {"words": ["heck"]}}
    )
    assert changed.status_code == 200, changed.text
    assert (await _send(ann, cid, "darn")).status_code == 201
    assert (await _send(ann, cid, "heck")).status_code == 422
    await mod.http.patch(f"/v1/moderation/rules/{rule['id']}", json={"enabled": False})
    assert (await _send(ann, cid, "heck")).status_code == 201
    assert (await mod.http.delete(f"/v1/moderation/rules/{rule['id']}")).status_code == 204

    actions = [e["action"] for e in await _audit(services, "moderation.rule")]
    assert actions == [
        "moderation.rule_delete",
        "moderation.rule_update",
        "moderation.rule_update",
        "moderation.rule_create",
    ]


# -- sanctions -------------------------------------------------------------------------------------


async def test_a_mute_stops_sends_until_it_expires_and_the_user_can_see_it(
    cast: dict[str, Person], services: Services
) -> None:
    ann, bob, mod = cast["ann"], cast["bob"], cast["mod"]
    cid = await create_conversation(ann, bob)
    other = await create_conversation(ann, bob, title="other")
    muted = await mod.http.post(
        "/v1/moderation/sanctions",
        json={
            "user_id": ann.user.id,
            "kind": "mute",
            "conversation_id": cid,
            "duration_seconds": 2,
            "reason": "cool down",
        },
    )
    assert muted.status_code == 201, muted.text

    refused = await _send(ann, cid, "but why")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ERR_MUTED"
    assert "cool down" in refused.json()["error"]["message"]
    assert (await _send(ann, other, "elsewhere is fine")).status_code == 201
    mine = (await ann.http.get("/v1/me/sanctions")).json()["sanctions"]
    assert [(s["kind"], s["conversation_id"]) for s in mine] == [("mute", cid)]

    async def can_send() -> bool:
        return (await _send(ann, cid, "back")).status_code == 201

    await eventually(can_send, timeout=10, what="the mute to expire")
    (entry,) = await _audit(services, "moderation.mute")
    assert entry["target_kind"] == "user" and entry["target_id"] == str(ann.user.id)
    assert entry["after"]["expires_at"] and entry["reason"] == "cool down"


async def test_a_conversation_ban_removes_the_member_and_keeps_them_out(
    cast: dict[str, Person], people: PeopleFactory, services: Services
) -> None:
    ann, bob, mod = cast["ann"], cast["bob"], cast["mod"]
    cat = await people.add()
    cid = await create_conversation(ann, bob, cat)
    sent = (await _send(cat, cid, "spam spam")).json()
    await bob.http.post(
        f"/v1/conversations/{cid}/messages/{sent['id']}/report", json={"reason": "spam"}
    )
    (item,) = await _queue(mod)

    banned = await _act(mod, item["id"], action="ban", reason="spammer", remove_content=False)

    assert banned.status_code == 200, banned.text
    assert (await _send(cat, cid, "let me back")).status_code == 404  # no longer a member
    members = (await ann.http.get(f"/v1/conversations/{cid}/members")).json()["members"]
    assert cat.user.id not in [m["user_id"] for m in members]
    re_add = await ann.http.post(
        f"/v1/conversations/{cid}/members", json={"members": [cat.user.name]}
    )
    assert re_add.status_code == 403 and re_add.json()["error"]["code"] == "ERR_BANNED"
    (entry,) = await _audit(services, "moderation.ban")
    assert entry["after"]["sanction"]["kind"] == "ban"
    assert entry["after"]["sanction"]["conversation_id"] == cid

    sanction_id = entry["after"]["sanction"]["id"]
    lifted = await mod.http.post(
        f"/v1/moderation/sanctions/{sanction_id}/lift", json={"reason": "appeal granted"}
    )
    assert lifted.status_code == 200 and lifted.json()["lifted_by"] == mod.user.name
    re_add = await ann.http.post(
        f"/v1/conversations/{cid}/members", json={"members": [cat.user.name]}
    )
    assert re_add.status_code == 200, re_add.text
    assert (
        await mod.http.post(f"/v1/moderation/sanctions/{sanction_id}/lift", json={})
    ).status_code == 409
    assert len(await _audit(services, "moderation.lift")) == 1


async def test_a_global_ban_refuses_sends_everywhere_and_staff_cannot_be_banned(
    cast: dict[str, Person],
) -> None:
    ann, bob, mod, admin = cast["ann"], cast["bob"], cast["mod"], cast["admin"]
    first = await create_conversation(ann, bob)
    second = await create_conversation(ann, bob, title="2")
    ok = await mod.http.post(
        "/v1/moderation/sanctions", json={"user_id": ann.user.id, "kind": "ban", "reason": "fraud"}
    )
    assert ok.status_code == 201

    for cid in (first, second):
        refused = await _send(ann, cid, "hello?")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "ERR_BANNED"
    stream = await ann.http.get("/v1/stream/poll", params={"timeout": 0})
    assert stream.status_code == 403 and stream.json()["error"]["code"] == "ERR_BANNED"
    staff = await mod.http.post(
        "/v1/moderation/sanctions", json={"user_id": admin.user.id, "kind": "ban"}
    )
    assert staff.status_code == 403
    unknown = await mod.http.post(
        "/v1/moderation/sanctions", json={"user_id": 999_999, "kind": "mute"}
    )
    assert unknown.status_code == 404


async def test_a_send_that_no_rule_looks_at_costs_no_extra_query(
    cast: dict[str, Person], services: Services
) -> None:
    from sqlalchemy import event

    from parley.core.models import NewMessage

    ann, bob, mod = cast["ann"], cast["bob"], cast["mod"]
    room = await create_conversation(ann, bob, kind="room")
    await _rule(
        mod,
        name="groups only",
        kind="words",
        scope="conversation_kind",
        scope_value="group",
        config={"words": ["x"]},
    )
    conversation, _ = await services.timeline.conversations.create_conversation(
        kind=ConversationKind.ROOM, title="probe", created_by=ann.user.id, member_ids=[]
    )
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engines = {services.db._reader.sync_engine, services.db._writer.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", seen)
    try:
        for i in range(50):
            send = NewMessage(conversation.id, ann.user.id, f"q{i}", "x marks the spot")
            assert await services.moderation.guard.screen_send(ann.user, conversation, send) is None
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", seen)

    assert statements == []
    assert (await _send(ann, room, "x")).status_code == 201


async def test_a_refused_sanction_leaves_the_item_undecided(cast: dict[str, Person]) -> None:
    admin, bob, mod = cast["admin"], cast["bob"], cast["mod"]
    cid = await create_conversation(admin, bob)
    await _rule(mod, name="all", kind="regex", config={"patterns": ["."]})
    assert (await _send(admin, cid, "hello team")).status_code == 409
    (item,) = await _queue(mod)

    refused = await _act(mod, item["id"], action="ban", scope="global")
    bad_scope = await _act(mod, item["id"], action="mute", scope="planet")

    assert refused.status_code == 403 and "staff cannot be muted" in refused.text
    assert bad_scope.status_code == 400
    assert [i["id"] for i in await _queue(mod)] == [item["id"]]
