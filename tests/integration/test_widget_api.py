"""The Widget API's contract and defences (docs/widget.md), on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.assembly import Services
from parley.core.models import Role
from parley.features.widget.guard import WidgetLimits
from parley.settings import Settings
from tests.conftest import PeopleFactory, Person

SITE = "https://shop.example.com"
TRUSTED_PROXY = "10.0.0.7"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        log_json=False,
        sqlite_synchronous="NORMAL",
        privacy_url="https://example.com/privacy",
        privacy_text="We keep your messages.",
        trusted_proxies=["10.0.0.0/8"],
        widget_bootstrap_rate_per_ip="3/minute",
        widget_bootstrap_rate_per_token="5/minute",
        widget_send_rate_per_session="3/minute",
        widget_send_rate_per_ip="100/minute",
        widget_poll_rate_per_session="100/minute",
        widget_poll_min_interval_seconds=60,
    )


class Site:
    """A web page embedding the widget: a browser-like client sending the page's Origin."""

    def __init__(self, people: PeopleFactory, *, origin: str = SITE, peer: str = "127.0.0.1"):
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=people.app, client=(peer, 40000)),
            base_url="http://parley.test",
            headers={"Origin": origin} if origin else {},
            timeout=30,
        )
        people.clients.append(self.http)

    async def bootstrap(self, widget_token: str, **extra: Any) -> httpx.Response:
        headers = extra.pop("headers", None)
        return await self.http.post(
            "/api/widget/bootstrap",
            json={"widget_token": widget_token, **extra},
            headers=headers,
        )

    async def send(self, session: str, body: str, client_msg_id: str = "m1") -> httpx.Response:
        return await self.http.post(
            "/api/widget/messages",
            json={"session": session, "client_msg_id": client_msg_id, "body": body},
        )


async def make_inbox(people: PeopleFactory, **fields: Any) -> tuple[Person, dict[str, Any]]:
    admin = await people.add(role=Role.ADMIN)
    operator = await people.add()
    response = await admin.http.post(
        "/v1/admin/inboxes",
        json={
            "name": "Shop",
            "allowed_domains": ["shop.example.com"],
            "operators": [operator.user.name],
            **fields,
        },
    )
    assert response.status_code == 201, response.text
    return operator, response.json()


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


# -- bootstrap and sessions ----------------------------------------------------------------------


async def test_bootstrap_starts_a_session_with_the_default_privacy_line(
    people: PeopleFactory, services: Services
) -> None:
    operator, inbox = await make_inbox(people)
    await services.stream.ephemeral.presence_touch(operator.user.id, "console", 60)

    response = await Site(people).bootstrap(inbox["widget_token"])

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["session"] and body["restored"] is False
    assert body["visitor_name"].startswith("visitor-")
    assert body["privacy"] == {
        "url": "https://example.com/privacy",
        "text": "We keep your messages.",
    }
    assert body["online"] is True and body["offline_message"] is None


async def test_inbox_privacy_and_closed_hours_override_the_defaults(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(
        people,
        privacy_url="https://shop.example.com/privacy",
        offline_message="We answer tomorrow.",
        working_hours={"timezone": "Europe/Moscow", "days": [], "start": "09:00", "end": "18:00"},
    )

    body = (await Site(people).bootstrap(inbox["widget_token"])).json()

    assert body["privacy"]["url"] == "https://shop.example.com/privacy"
    assert body["online"] is False
    assert body["offline_message"] == "We answer tomorrow."


async def test_returning_visitor_gets_the_same_conversation_back(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    first = (await site.bootstrap(inbox["widget_token"])).json()

    again = await site.bootstrap(inbox["widget_token"], session=first["session"])

    assert again.status_code == 200
    assert again.json()["restored"] is True
    assert again.json()["conversation_id"] == first["conversation_id"]
    assert again.json()["visitor_id"] == first["visitor_id"]


async def test_session_from_another_inbox_is_refused(people: PeopleFactory) -> None:
    _, shop = await make_inbox(people)
    _, other = await make_inbox(people)
    site = Site(people)
    session = (await site.bootstrap(shop["widget_token"])).json()["session"]

    response = await site.bootstrap(other["widget_token"], session=session)

    assert_error(response, 403, "ERR_FORBIDDEN")


async def test_unknown_widget_token_is_not_found(people: PeopleFactory) -> None:
    assert_error(await Site(people).bootstrap("wt_nosuchinbox"), 404, "ERR_NOT_FOUND")


# -- messages ------------------------------------------------------------------------------------


async def test_visitor_message_is_stored_and_seen_by_the_operator(people: PeopleFactory) -> None:
    operator, inbox = await make_inbox(people)
    site = Site(people)
    started = (await site.bootstrap(inbox["widget_token"])).json()

    sent = await site.send(started["session"], "Is the red one in stock?")
    retry = await site.send(started["session"], "Is the red one in stock?")

    assert sent.status_code == 201 and sent.json()["seq"] == 1
    assert retry.status_code == 200 and retry.json()["id"] == sent.json()["id"]
    page = await operator.http.get(f"/v1/conversations/{started['conversation_id']}/messages")
    assert [m["body"] for m in page.json()["messages"]] == ["Is the red one in stock?"]


async def test_operator_reply_reaches_the_visitor_poll(people: PeopleFactory) -> None:
    operator, inbox = await make_inbox(people)
    site = Site(people)
    started = (await site.bootstrap(inbox["widget_token"])).json()
    cid = started["conversation_id"]
    await operator.http.post(
        f"/v1/conversations/{cid}/messages", json={"client_msg_id": "r1", "body": "Yes!"}
    )

    polled = await site.http.get(
        "/api/widget/poll", params={"session": started["session"], "cursor": "0", "timeout": 0}
    )

    assert polled.status_code == 200, polled.text
    bodies = [e["message"]["body"] for e in polled.json()["events"] if e["type"] == "message"]
    assert bodies == ["Yes!"]


@pytest.mark.parametrize(
    "body",
    ["x" * 16_001, "nul \x00 byte", ""],
    ids=["oversized", "nul", "empty"],
)
async def test_bad_message_body_is_refused(people: PeopleFactory, body: str) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    session = (await site.bootstrap(inbox["widget_token"])).json()["session"]

    response = await site.send(session, body)

    assert 400 <= response.status_code < 500
    assert response.status_code != 429


async def test_malformed_tokens_are_refused_before_any_lookup(people: PeopleFactory) -> None:
    site = Site(people)

    nul = await site.bootstrap("wt_abc\x00defgh")
    junk = await site.http.get("/api/widget/poll", params={"session": "<script>alert(1)</script>"})

    assert nul.status_code == 422
    assert junk.status_code == 422


# -- origin allowlist ----------------------------------------------------------------------------


async def test_foreign_origin_is_refused_and_logged(
    people: PeopleFactory, caplog: pytest.LogCaptureFixture
) -> None:
    _, inbox = await make_inbox(people)

    with caplog.at_level(logging.WARNING):
        response = await Site(people, origin="https://evil.example.net").bootstrap(
            inbox["widget_token"]
        )

    assert_error(response, 403, "ERR_ORIGIN_NOT_ALLOWED")
    assert any("origin not allowed" in r.getMessage() for r in caplog.records)


async def test_foreign_referer_is_refused(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)

    response = await Site(people, origin="").bootstrap(
        inbox["widget_token"], headers={"Referer": "https://evil.example.net/page"}
    )

    assert_error(response, 403, "ERR_ORIGIN_NOT_ALLOWED")


async def test_allowed_referer_without_origin_is_accepted(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)

    response = await Site(people, origin="").bootstrap(
        inbox["widget_token"], headers={"Referer": f"{SITE}/catalog?page=2"}
    )

    assert response.status_code == 200, response.text


async def test_send_from_a_foreign_origin_is_refused(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    session = (await Site(people).bootstrap(inbox["widget_token"])).json()["session"]

    response = await Site(people, origin="https://evil.example.net").send(session, "hi")

    assert_error(response, 403, "ERR_ORIGIN_NOT_ALLOWED")


# -- rate limits ---------------------------------------------------------------------------------


def assert_rate_limited(response: httpx.Response) -> None:
    assert_error(response, 429, "ERR_RATE_LIMITED")
    assert int(response.headers["Retry-After"]) >= 1


async def test_bootstrap_past_the_per_ip_rate_gets_429(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    for _ in range(3):
        assert (await site.bootstrap(inbox["widget_token"])).status_code == 200

    assert_rate_limited(await site.bootstrap(inbox["widget_token"]))


async def test_bootstrap_past_the_per_token_rate_gets_429(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people, peer=TRUSTED_PROXY)

    statuses = []
    for n in range(6):
        response = await site.bootstrap(
            inbox["widget_token"], headers={"X-Forwarded-For": f"203.0.113.{n}"}
        )
        statuses.append(response.status_code)

    assert statuses == [200] * 5 + [429]
    assert_rate_limited(response)


async def test_send_past_the_per_session_rate_gets_429(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    session = (await site.bootstrap(inbox["widget_token"])).json()["session"]
    for n in range(3):
        assert (await site.send(session, "hello", client_msg_id=f"m{n}")).status_code == 201

    assert_rate_limited(await site.send(session, "hello", client_msg_id="m3"))


async def test_poll_sooner_than_the_minimum_interval_gets_429(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    session = (await site.bootstrap(inbox["widget_token"])).json()["session"]
    first = await site.http.get("/api/widget/poll", params={"session": session})

    second = await site.http.get("/api/widget/poll", params={"session": session})

    assert first.status_code == 200, first.text
    assert_rate_limited(second)


# -- client address ------------------------------------------------------------------------------


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people, peer="198.51.100.9")

    statuses = [
        (
            await site.bootstrap(
                inbox["widget_token"], headers={"X-Forwarded-For": f"203.0.113.{n}"}
            )
        ).status_code
        for n in range(4)
    ]

    # Each request claims a new address; all count against the real peer.
    assert statuses == [200, 200, 200, 429]


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(
    people: PeopleFactory,
) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people, peer=TRUSTED_PROXY)
    spoofed_then_real = {"X-Forwarded-For": "1.2.3.4, 203.0.113.50"}
    for _ in range(3):
        assert (await site.bootstrap(inbox["widget_token"], headers=spoofed_then_real)).is_success

    same_client = await site.bootstrap(inbox["widget_token"], headers=spoofed_then_real)
    other_client = await site.bootstrap(
        inbox["widget_token"], headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.51"}
    )

    assert same_client.status_code == 429
    assert other_client.status_code == 200


# -- kill switches -------------------------------------------------------------------------------


async def test_global_switch_off_answers_503(people: PeopleFactory, services: Services) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    session = (await site.bootstrap(inbox["widget_token"])).json()["session"]
    services.settings.messenger_enabled = False

    boot = await site.bootstrap(inbox["widget_token"])
    send = await site.send(session, "hello")

    assert_error(boot, 503, "ERR_MESSENGER_DISABLED")
    assert_error(send, 503, "ERR_MESSENGER_DISABLED")


async def test_inbox_kill_switch_answers_503(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    admin = await people.add(role=Role.ADMIN)
    site = Site(people)
    session = (await site.bootstrap(inbox["widget_token"])).json()["session"]

    switched = await admin.http.patch(f"/v1/admin/inboxes/{inbox['id']}", json={"enabled": False})

    assert switched.status_code == 200 and switched.json()["enabled"] is False
    assert_error(await site.bootstrap(inbox["widget_token"]), 503, "ERR_MESSENGER_DISABLED")
    assert_error(await site.send(session, "hello"), 503, "ERR_MESSENGER_DISABLED")


# -- admin REST ----------------------------------------------------------------------------------


async def test_only_admins_manage_inboxes(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    member = await people.add()

    create = await member.http.post("/v1/admin/inboxes", json={"name": "Mine"})
    read = await member.http.get(f"/v1/admin/inboxes/{inbox['id']}")

    assert_error(create, 403, "ERR_FORBIDDEN")
    assert_error(read, 403, "ERR_FORBIDDEN")


async def test_admin_lists_inboxes_each_with_its_own_widget_token(people: PeopleFactory) -> None:
    _, first = await make_inbox(people)
    _, second = await make_inbox(people)
    admin_user = await people.add(role=Role.ADMIN)

    listed = await admin_user.http.get("/v1/admin/inboxes")

    tokens = [i["widget_token"] for i in listed.json()["inboxes"]]
    assert tokens == [first["widget_token"], second["widget_token"]]
    assert len(set(tokens)) == 2


# -- CORS ----------------------------------------------------------------------------------------


async def test_allowed_page_may_read_the_answer_and_a_foreign_one_may_not(
    people: PeopleFactory,
) -> None:
    _, inbox = await make_inbox(people)

    allowed = await Site(people).bootstrap(inbox["widget_token"])
    foreign = await Site(people, origin="https://evil.example.net").bootstrap(inbox["widget_token"])
    preflight = await Site(people).http.options(
        "/api/widget/messages", headers={"Access-Control-Request-Method": "POST"}
    )

    assert allowed.headers["Access-Control-Allow-Origin"] == SITE
    assert "Access-Control-Allow-Origin" not in foreign.headers
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


# -- every endpoint passes the same defences -----------------------------------------------------

ENDPOINTS = [
    "GET /messages",
    "POST /messages",
    "POST /read",
    "POST /typing",
    "POST /attachments",
    "GET /attachments",
    "GET /poll",
    "GET /sse",
]


async def call(site: Site, endpoint: str, session: str) -> httpx.Response:
    """One request to a session-scoped endpoint, valid in every way but what the test changes."""
    method, path = endpoint.split(" ")
    query = {"session": session}
    if endpoint == "POST /messages":
        return await site.send(session, "hello", client_msg_id="every-endpoint")
    if endpoint in ("POST /read", "POST /typing"):
        return await site.http.post(f"/api/widget{path}", json={"session": session})
    if endpoint == "POST /attachments":
        files = {"file": ("note.txt", b"hello")}
        return await site.http.post("/api/widget/attachments", params=query, files=files)
    if endpoint == "GET /attachments":
        return await site.http.get("/api/widget/attachments/att_nosuchfile", params=query)
    if endpoint == "GET /poll":
        return await site.http.get("/api/widget/poll", params={**query, "timeout": "0"})
    return await site.http.request(method, f"/api/widget{path}", params=query)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_every_endpoint_refuses_a_foreign_origin(
    people: PeopleFactory, endpoint: str
) -> None:
    _, inbox = await make_inbox(people)
    session = (await Site(people).bootstrap(inbox["widget_token"])).json()["session"]

    response = await call(Site(people, origin="https://evil.example.net"), endpoint, session)

    assert_error(response, 403, "ERR_ORIGIN_NOT_ALLOWED")
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_every_endpoint_answers_503_while_the_inbox_is_switched_off(
    people: PeopleFactory, endpoint: str
) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    session = (await site.bootstrap(inbox["widget_token"])).json()["session"]
    admin = await people.add(role=Role.ADMIN)
    await admin.http.patch(f"/v1/admin/inboxes/{inbox['id']}", json={"enabled": False})

    assert_error(await call(site, endpoint, session), 503, "ERR_MESSENGER_DISABLED")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_every_endpoint_answers_503_while_the_messenger_is_off(
    people: PeopleFactory, services: Services, endpoint: str
) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    session = (await site.bootstrap(inbox["widget_token"])).json()["session"]
    services.settings.messenger_enabled = False

    assert_error(await call(site, endpoint, session), 503, "ERR_MESSENGER_DISABLED")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_every_endpoint_refuses_an_unknown_session(
    people: PeopleFactory, endpoint: str
) -> None:
    assert_error(await call(Site(people), endpoint, "vs_no-such-session"), 404, "ERR_NOT_FOUND")


def tighter(services: Services, **rates: str | int) -> None:
    """Swap in stricter widget rates for the rest of this test."""
    services.widget_limits = WidgetLimits(services.settings.model_copy(update=rates))


async def test_send_past_the_per_ip_rate_gets_429(
    people: PeopleFactory, services: Services
) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people, peer=TRUSTED_PROXY)
    sessions = [
        (
            await site.bootstrap(
                inbox["widget_token"], headers={"X-Forwarded-For": f"203.0.113.{n}"}
            )
        ).json()["session"]
        for n in range(3)
    ]
    tighter(services, widget_send_rate_per_ip="2/minute")
    same_ip = {"X-Forwarded-For": "198.51.100.1"}

    statuses = [
        (
            await site.http.post(
                "/api/widget/messages",
                json={"session": session, "client_msg_id": "m", "body": "hi"},
                headers=same_ip,
            )
        ).status_code
        for session in sessions
    ]

    assert statuses == [201, 201, 429]


async def test_poll_past_the_per_session_rate_gets_429(
    people: PeopleFactory, services: Services
) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    session = (await site.bootstrap(inbox["widget_token"])).json()["session"]
    tighter(services, widget_poll_rate_per_session="2/minute", widget_poll_min_interval_seconds=0)
    for _ in range(2):
        ok = await site.http.get("/api/widget/poll", params={"session": session, "timeout": "0"})
        assert ok.status_code == 200, ok.text

    limited = await site.http.get("/api/widget/poll", params={"session": session, "timeout": "0"})
    history = await site.http.get("/api/widget/messages", params={"session": session})

    assert_rate_limited(limited)
    assert_rate_limited(history)
    assert limited.headers["Access-Control-Allow-Origin"] == SITE


# -- history and receipts ------------------------------------------------------------------------


async def test_history_and_read_receipts_restore_the_chat_after_a_reload(
    people: PeopleFactory,
) -> None:
    operator, inbox = await make_inbox(people)
    site = Site(people)
    started = (await site.bootstrap(inbox["widget_token"])).json()
    cid = started["conversation_id"]
    await site.send(started["session"], "Where is my parcel?")
    await operator.http.post(
        f"/v1/conversations/{cid}/messages", json={"client_msg_id": "r1", "body": "On its way."}
    )
    marked = await operator.http.post(f"/v1/conversations/{cid}/receipts", json={"read_seq": 1})
    assert marked.status_code < 300, marked.text

    history = await site.http.get("/api/widget/messages", params={"session": started["session"]})
    older = await site.http.get(
        "/api/widget/messages", params={"session": started["session"], "before_seq": 2}
    )
    newest = await site.http.get(
        "/api/widget/messages", params={"session": started["session"], "limit": 1}
    )
    read = await site.http.post(
        "/api/widget/read", json={"session": started["session"], "read_seq": 2}
    )
    members = await operator.http.get(f"/v1/conversations/{cid}/members")

    assert [m["body"] for m in history.json()["messages"]] == [
        "Where is my parcel?",
        "On its way.",
    ]
    assert history.json()["last_seq"] == 2
    assert history.json()["receipts"] == [
        {"conversation_id": cid, "user_id": operator.user.id, "delivered_seq": 1, "read_seq": 1}
    ]
    assert [m["seq"] for m in older.json()["messages"]] == [1]
    assert [m["seq"] for m in newest.json()["messages"]] == [2]
    assert read.status_code == 200, read.text
    assert read.json() == {
        "conversation_id": cid,
        "user_id": started["visitor_id"],
        "delivered_seq": 2,
        "read_seq": 2,
    }
    visitor = next(m for m in members.json()["members"] if m["user_id"] == started["visitor_id"])
    assert visitor["read_seq"] == 2


async def test_a_read_receipt_past_the_last_message_is_refused(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    session = (await site.bootstrap(inbox["widget_token"])).json()["session"]

    response = await site.http.post("/api/widget/read", json={"session": session, "read_seq": 5})

    assert_error(response, 422, "ERR_RECEIPT_BEYOND_LAST_SEQ")


async def test_the_visitor_learns_the_display_names_of_who_answers_and_nothing_more(
    people: PeopleFactory,
) -> None:
    operator, inbox = await make_inbox(people)
    site = Site(people)
    visit = (await site.bootstrap(inbox["widget_token"])).json()
    assign = await operator.http.post(
        f"/v1/livechat/conversations/{visit['conversation_id']}/assign-me"
    )
    assert assign.status_code == 200, assign.text

    mine = await site.http.get("/api/widget/staff", params={"session": visit["session"]})
    unknown = await site.http.get("/api/widget/staff", params={"session": "x" * 43})
    as_operator = await operator.http.get("/api/widget/staff", params={"session": "x" * 43})

    assert mine.status_code == 200, mine.text
    assert mine.json() == {"staff": [{"id": operator.user.id, "name": operator.user.display_name}]}
    assert unknown.status_code == 404 and as_operator.status_code == 404


async def test_the_inbox_greeting_and_reply_time_reach_the_widget(people: PeopleFactory) -> None:
    operator, inbox = await make_inbox(
        people, greeting="Hi there! Ask us anything.", reply_time="We usually reply in minutes."
    )
    site = Site(people)
    first = (await site.bootstrap(inbox["widget_token"])).json()
    admin = await people.add(role=Role.ADMIN)
    cleared = await admin.http.patch(f"/v1/admin/inboxes/{inbox['id']}", json={"greeting": None})
    by_operator = await operator.http.patch(
        f"/v1/admin/inboxes/{inbox['id']}", json={"greeting": "Hacked"}
    )
    again = (await site.bootstrap(inbox["widget_token"], session=first["session"])).json()

    assert inbox["greeting"] == "Hi there! Ask us anything."
    assert (first["greeting"], first["reply_time"]) == (
        "Hi there! Ask us anything.",
        "We usually reply in minutes.",
    )
    assert cleared.status_code == 200 and cleared.json()["greeting"] is None
    assert by_operator.status_code == 403
    assert (again["greeting"], again["reply_time"]) == (None, "We usually reply in minutes.")
