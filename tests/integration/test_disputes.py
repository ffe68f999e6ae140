"""Disputes over REST on SQLite and PostgreSQL: open → evidence → review → partial release,
roles and the dispute_tools_v2 flag, evidence, the audit entry of every step, and the signed
webhook of every transition (received by a real local HTTP server)."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from parley.app import create_app
from parley.core.audit import AuditFilter
from parley.core.models import Role
from parley.features.disputes.webhooks import verify
from parley.services.audit import entry_json
from parley.settings import Settings
from tests.conftest import PeopleFactory, Person, create_conversation
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("backend")
SECRET = "whsec-test-secret"


class Receiver(BaseHTTPRequestHandler):
    """The marketplace's payment system: keeps every delivery; answers `status` (default 200)."""

    received: list[dict[str, Any]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append({"headers": dict(self.headers), "body": body})
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def webhook_url() -> Iterator[str]:
    Receiver.received, Receiver.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/payments/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def disputes_app(settings: Settings, webhook_url: str) -> AsyncIterator[FastAPI]:
    configured = settings.model_copy(
        update={
            "dispute_webhook_url": webhook_url,
            "dispute_webhook_secret": SECRET,
            "dispute_scheduler_seconds": 0.2,
        }
    )
    application = create_app(configured)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def cast(disputes_app: FastAPI) -> AsyncIterator[dict[str, Person]]:
    services = disputes_app.state.services
    people = PeopleFactory(disputes_app, services)
    await services.release.flags.do_update_flag("test", "dispute_tools_v2", {"enabled": True})
    yield {
        "buyer": await people.add(),
        "seller": await people.add(),
        "agent": await people.add(role=Role.DISPUTE_OPS),
        "agent2": await people.add(role=Role.DISPUTE_OPS),
        "admin": await people.add(role=Role.ADMIN),
        "mod": await people.add(role=Role.MODERATOR),
        "stranger": await people.add(),
    }
    await people.close()


async def _open(cast: dict[str, Person], cid: int, **extra: Any) -> httpx.Response:
    body = {
        "conversation_id": cid,
        "buyer": cast["buyer"].user.name,
        "seller": cast["seller"].user.name,
        "amount": 12_345,
        "currency": "EUR",
        "reference": "order-77",
        "reason": "item not as described",
        **extra,
    }
    return await cast["agent"].http.post("/v1/disputes", json=body)


def _deliveries() -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in Receiver.received]


async def test_an_agent_takes_a_dispute_from_open_to_a_partial_release(
    cast: dict[str, Person], disputes_app: FastAPI
) -> None:
    services = disputes_app.state.services
    buyer, seller, agent = cast["buyer"], cast["seller"], cast["agent"]
    cid = await create_conversation(buyer, seller)
    photo = await buyer.http.post(
        f"/v1/conversations/{cid}/attachments", files={"file": ("scratch.txt", b"a scratch")}
    )
    said = await buyer.http.post(
        f"/v1/conversations/{cid}/messages",
        json={
            "client_msg_id": "b1",
            "body": "It arrived scratched",
            "attachments": [photo.json()["id"]],
        },
    )

    opened = await _open(cast, cid)
    assert opened.status_code == 201, opened.text
    dispute = opened.json()
    assert dispute["status"] == "open" and dispute["amount"] == 12_345
    assert dispute["buyer"]["name"] == buyer.user.name and dispute["deadline_at"]
    did = dispute["id"]

    # The buyer pins their message (its file comes along) while the dispute collects evidence.
    pinned = await buyer.http.post(
        f"/v1/disputes/{did}/evidence", json={"message_id": said.json()["id"], "note": "see photo"}
    )
    assert pinned.status_code == 201, pinned.text
    assert pinned.json()["attachments"][0]["file_name"] == "scratch.txt"
    steps = [("evidence", "asked both for photos"), ("review", "evidence complete")]
    for to, reason in steps:
        moved = await agent.http.post(
            f"/v1/disputes/{did}/transition", json={"to": to, "reason": reason}
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["status"] == to
    file = await agent.http.get(f"/v1/disputes/{did}/files/{photo.json()['id']}")
    assert file.status_code == 200 and file.content == b"a scratch"
    outsider = await cast["stranger"].http.get(f"/v1/disputes/{did}/files/{photo.json()['id']}")
    assert outsider.status_code == 404

    wrong = await agent.http.post(
        f"/v1/disputes/{did}/resolve",
        json={"outcome": "partial_release", "seller_amount": 10_000, "buyer_amount": 2_000},
    )
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "ERR_AMOUNTS_MISMATCH"
    assert "12000, not the 12345" in wrong.json()["error"]["message"]
    settled = await agent.http.post(
        f"/v1/disputes/{did}/resolve",
        json={
            "outcome": "partial_release",
            "seller_amount": 10_000,
            "buyer_amount": 2_345,
            "reason": "scratch is cosmetic",
        },
    )
    assert settled.status_code == 200, settled.text
    final = settled.json()
    assert final["status"] == "resolved" and final["deadline_at"] is None
    assert final["outcome"] == {
        "kind": "partial_release",
        "seller_amount": 10_000,
        "buyer_amount": 2_345,
    }
    assert [e["kind"] for e in final["events"]] == [
        "opened",
        "evidence",
        "status",
        "status",
        "resolved",
    ]

    # Every staff step is in the audit log, with who, before/after and why.
    entries = [
        entry_json(e)
        for e in await services.audit.search(
            None, AuditFilter(target_kind="dispute", target_id=str(did), limit=50)
        )
    ][::-1]
    assert [e["action"] for e in entries] == [
        "dispute.open",
        "dispute.transition",
        "dispute.transition",
        "dispute.resolve",
    ]
    assert {e["actor"] for e in entries} == {agent.user.name}
    assert entries[1]["before"]["status"] == "open" and entries[1]["after"]["status"] == "evidence"
    assert entries[3]["reason"] == "scratch is cosmetic"
    assert entries[3]["after"]["outcome"]["buyer_amount"] == 2_345

    # The payment system got one signed webhook per transition, in order.
    await eventually(lambda: len(Receiver.received) >= 4, what="4 webhooks")
    events = [d["event"] for d in _deliveries()]
    assert events == [
        "dispute.opened",
        "dispute.status_changed",
        "dispute.status_changed",
        "dispute.resolved",
    ]
    last = Receiver.received[-1]
    assert verify(SECRET, last["body"], last["headers"]["X-Parley-Signature"])
    assert not verify("another-secret", last["body"], last["headers"]["X-Parley-Signature"])
    assert last["headers"]["X-Parley-Event"] == "dispute.resolved"
    resolved = _deliveries()[-1]
    assert resolved["id"] == int(last["headers"]["X-Parley-Delivery"])
    assert resolved["transition"] == {
        "from": "review",
        "to": "resolved",
        "actor": agent.user.name,
        "reason": "scratch is cosmetic",
    }
    assert resolved["dispute"]["outcome"]["seller_amount"] == 10_000
    assert resolved["dispute"]["currency"] == "EUR"


async def test_illegal_transitions_are_refused_and_change_nothing(cast: dict[str, Person]) -> None:
    agent = cast["agent"]
    cid = await create_conversation(cast["buyer"], cast["seller"])
    did = (await _open(cast, cid)).json()["id"]

    for to in ("review", "open", "resolved", "paid"):
        refused = await agent.http.post(f"/v1/disputes/{did}/transition", json={"to": to})
        assert refused.status_code in (400, 409), (to, refused.text)
    early = await agent.http.post(
        f"/v1/disputes/{did}/resolve", json={"outcome": "refund_to_buyer"}
    )
    assert early.status_code == 409 and early.json()["error"]["code"] == "ERR_ILLEGAL_TRANSITION"
    cancelled = await agent.http.post(f"/v1/disputes/{did}/transition", json={"to": "cancelled"})
    assert cancelled.status_code == 200
    after = await agent.http.post(f"/v1/disputes/{did}/transition", json={"to": "evidence"})
    assert after.status_code == 409 and "final" in after.json()["error"]["message"]
    stale = await agent.http.post(
        f"/v1/disputes/{did}/transition", json={"to": "evidence", "version": 1}
    )
    assert stale.status_code == 409
    assert (await agent.http.get(f"/v1/disputes/{did}")).json()["status"] == "cancelled"


async def test_only_dispute_ops_act_and_only_with_the_flag_on(
    cast: dict[str, Person], disputes_app: FastAPI
) -> None:
    cid = await create_conversation(cast["buyer"], cast["seller"])
    did = (await _open(cast, cid)).json()["id"]
    for name in ("admin", "mod", "buyer", "stranger"):
        person = cast[name]
        for method, path, body in (
            (
                "POST",
                "/v1/disputes",
                {
                    "conversation_id": cid,
                    "buyer": cast["buyer"].user.name,
                    "seller": cast["seller"].user.name,
                    "amount": 1,
                    "currency": "EUR",
                    "reference": "x",
                },
            ),
            ("POST", f"/v1/disputes/{did}/transition", {"to": "evidence"}),
            ("POST", f"/v1/disputes/{did}/resolve", {"outcome": "refund_to_buyer"}),
            ("POST", f"/v1/disputes/{did}/assign", {"assignee_id": person.user.id}),
        ):
            refused = await person.http.request(method, path, json=body)
            assert refused.status_code == 403, (name, path, refused.text)
    # The parties read their own dispute; anyone else, as if there were none.
    assert (await cast["buyer"].http.get(f"/v1/disputes/{did}")).status_code == 200
    assert (await cast["stranger"].http.get(f"/v1/disputes/{did}")).status_code == 404
    assert (await cast["admin"].http.get(f"/v1/disputes/{did}")).status_code == 404
    own = (await cast["seller"].http.get("/v1/disputes")).json()["disputes"]
    assert [d["id"] for d in own] == [did]
    assert (await cast["stranger"].http.get("/v1/disputes")).json()["disputes"] == []

    flags = disputes_app.state.services.release.flags
    await flags.do_update_flag("test", "dispute_tools_v2", {"enabled": False})
    off = await cast["agent"].http.post(f"/v1/disputes/{did}/transition", json={"to": "evidence"})
    assert off.status_code == 403 and off.json()["error"]["code"] == "ERR_FEATURE_DISABLED"
    # Rolled out to one agent only: the other one is refused.
    await flags.do_update_flag(
        "test",
        "dispute_tools_v2",
        {"enabled": True, "allow_users": [cast["agent"].user.id], "percentage": 0},
    )
    assert (await cast["agent"].http.get(f"/v1/disputes/{did}")).status_code == 200
    other = await cast["agent2"].http.get(f"/v1/disputes/{did}")
    assert other.status_code == 403 and other.json()["error"]["code"] == "ERR_FEATURE_DISABLED"


async def test_opening_checks_the_parties_the_amount_and_duplicates(
    cast: dict[str, Person],
) -> None:
    cid = await create_conversation(cast["buyer"], cast["seller"])
    outsider = await _open(cast, cid, seller=cast["stranger"].user.name)
    same = await _open(cast, cid, seller=cast["buyer"].user.name)
    float_amount = await _open(cast, cid, amount=12.5)
    zero = await _open(cast, cid, amount=0)
    currency = await _open(cast, cid, currency="euro")
    first = await _open(cast, cid)
    again = await _open(cast, cid)

    assert outsider.status_code == 400 and "not members" in outsider.json()["error"]["message"]
    assert same.status_code == 400
    assert float_amount.status_code == 422 and zero.status_code == 422
    assert currency.status_code == 422
    assert first.status_code == 201
    assert again.status_code == 409
    assert again.json()["error"]["details"] == {"dispute_id": first.json()["id"]}


async def test_parties_pin_evidence_only_while_it_is_collected(cast: dict[str, Person]) -> None:
    buyer, seller, agent = cast["buyer"], cast["seller"], cast["agent"]
    cid = await create_conversation(buyer, seller)
    other = await create_conversation(buyer, cast["stranger"])
    mine = await seller.http.post(
        f"/v1/conversations/{cid}/messages", json={"client_msg_id": "s1", "body": "shipped ok"}
    )
    elsewhere = await buyer.http.post(
        f"/v1/conversations/{other}/messages", json={"client_msg_id": "x", "body": "secret"}
    )
    did = (await _open(cast, cid)).json()["id"]
    url = f"/v1/disputes/{did}/evidence"

    assert (await seller.http.post(url, json={"message_id": mine.json()["id"]})).status_code == 201
    repeat = await seller.http.post(url, json={"message_id": mine.json()["id"]})
    foreign = await buyer.http.post(url, json={"message_id": elsewhere.json()["id"]})
    both = await buyer.http.post(url, json={"message_id": 1, "attachment_id": "att_x"})
    assert repeat.status_code == 409 and foreign.status_code == 404 and both.status_code == 422
    for to in ("evidence", "review"):
        await agent.http.post(f"/v1/disputes/{did}/transition", json={"to": to})
    late = await seller.http.post(url, json={"message_id": mine.json()["id"]})
    assert late.status_code == 409
    detail = (await buyer.http.get(f"/v1/disputes/{did}")).json()
    assert [e["body"] for e in detail["evidence"]] == ["shipped ok"]
    assert "webhooks" not in detail  # staff only


async def test_a_webhook_the_receiver_refuses_is_retried_with_the_same_delivery_id(
    cast: dict[str, Person],
) -> None:
    Receiver.status = 503
    cid = await create_conversation(cast["buyer"], cast["seller"])
    await _open(cast, cid)
    await eventually(lambda: len(Receiver.received) >= 2, timeout=10, what="a retry")
    Receiver.status = 200
    ids = {r["headers"]["X-Parley-Delivery"] for r in Receiver.received}
    assert len(ids) == 1


async def test_overdue_disputes_and_the_moderation_backlog_are_p1_gate_inputs(
    settings: Settings,
) -> None:
    configured = settings.model_copy(
        update={
            "dispute_sla_open_seconds": 1,
            "dispute_scheduler_seconds": 0.2,
            "release_max_moderation_backlog": 0,
        }
    )
    application = create_app(configured)
    async with application.router.lifespan_context(application):
        services = application.state.services
        people = PeopleFactory(application, services)
        try:
            await services.release.flags.do_update_flag("t", "dispute_tools_v2", {"enabled": True})
            cast = {
                "buyer": await people.add(),
                "seller": await people.add(),
                "agent": await people.add(role=Role.DISPUTE_OPS),
            }
            admin = await people.add(role=Role.ADMIN)

            async def p1(name: str) -> dict[str, Any]:
                gates = (await admin.http.get("/v1/admin/release/gates")).json()
                return next(c for c in gates["checks"] if c["name"] == name)

            assert (await p1("overdue_disputes"))["ok"] is True
            assert (await p1("moderation_backlog"))["ok"] is True
            cid = await create_conversation(cast["buyer"], cast["seller"])
            await _open(cast, cid)
            sent = await cast["buyer"].http.post(
                f"/v1/conversations/{cid}/messages", json={"client_msg_id": "r", "body": "rude"}
            )
            await cast["seller"].http.post(
                f"/v1/conversations/{cid}/messages/{sent.json()['id']}/report", json={}
            )

            async def overdue() -> bool:
                return (await p1("overdue_disputes"))["value"] == 1

            await eventually(overdue, timeout=15, what="the dispute to be overdue")
            check = await p1("overdue_disputes")
            assert check["ok"] is False and check["threshold"] == 0
            backlog = await p1("moderation_backlog")
            assert backlog["ok"] is False and backlog["value"] == 1
            gates = (await admin.http.get("/v1/admin/release/gates")).json()
            assert gates["gate_p1_ok"] is False
            assert any(r.startswith("overdue_disputes: 1 active") for r in gates["reasons"])
        finally:
            await people.close()
