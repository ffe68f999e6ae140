"""Visitor attachments: upload, send, download — only in the visitor's own conversation."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley.core.models import Role
from parley.settings import Settings
from tests.conftest import PeopleFactory
from tests.integration.test_widget_api import Site, assert_error, make_inbox

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99"
    b"=\x1d\x00\x00\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        log_json=False,
        sqlite_synchronous="NORMAL",
        widget_bootstrap_rate_per_ip="1000/minute",
        widget_challenge_after_per_ip="",
        widget_upload_rate_per_session="3/minute",
        widget_poll_min_interval_seconds=0,
    )


async def upload(site: Site, session: str, content: bytes = PNG, name: str = "dot.png") -> dict:
    response = await site.http.post(
        "/api/widget/attachments", params={"session": session}, files={"file": (name, content)}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_visitor_sends_a_picture_without_text_and_the_operator_gets_it(
    people: PeopleFactory,
) -> None:
    operator, inbox = await make_inbox(people)
    site = Site(people)
    started = (await site.bootstrap(inbox["widget_token"])).json()
    assert started["allow_attachments"] is True

    uploaded = await upload(site, started["session"])
    sent = await site.http.post(
        "/api/widget/messages",
        json={
            "session": started["session"],
            "client_msg_id": "pic",
            "body": "",
            "attachment_ids": [uploaded["id"]],
        },
    )

    assert uploaded["content_type"] == "image/png" and uploaded["size"] == len(PNG)
    assert sent.status_code == 201, sent.text
    assert [a["id"] for a in sent.json()["attachments"]] == [uploaded["id"]]
    page = await operator.http.get(f"/v1/conversations/{started['conversation_id']}/messages")
    assert page.json()["messages"][0]["attachments"][0]["id"] == uploaded["id"]
    got = await operator.http.get(f"/v1/attachments/{uploaded['id']}")
    assert got.content == PNG


async def test_visitor_downloads_files_of_their_own_conversation_only(
    people: PeopleFactory,
) -> None:
    operator, inbox = await make_inbox(people)
    site = Site(people)
    mine = (await site.bootstrap(inbox["widget_token"])).json()
    stranger = (await Site(people).bootstrap(inbox["widget_token"])).json()
    from_operator = await operator.http.post(
        f"/v1/conversations/{mine['conversation_id']}/attachments",
        files={"file": ("invoice.txt", b"Invoice 1234: paid")},
    )
    file_id = from_operator.json()["id"]

    own = await site.http.get(
        f"/api/widget/attachments/{file_id}", params={"session": mine["session"]}
    )
    foreign = await site.http.get(
        f"/api/widget/attachments/{file_id}", params={"session": stranger["session"]}
    )

    assert own.status_code == 200 and own.content == b"Invoice 1234: paid"
    assert own.headers["Content-Disposition"].startswith("attachment;")
    assert_error(foreign, 404, "ERR_NOT_FOUND")


async def test_a_file_of_another_conversation_cannot_be_sent(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    mine = (await site.bootstrap(inbox["widget_token"])).json()
    other = (await Site(people).bootstrap(inbox["widget_token"])).json()
    theirs = await upload(site, other["session"])

    response = await site.http.post(
        "/api/widget/messages",
        json={
            "session": mine["session"],
            "client_msg_id": "steal",
            "body": "",
            "attachment_ids": [theirs["id"]],
        },
    )

    assert_error(response, 422, "ERR_ATTACHMENT_UNAVAILABLE")


async def test_an_inbox_without_attachments_refuses_uploads_and_sends(
    people: PeopleFactory,
) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    started = (await site.bootstrap(inbox["widget_token"])).json()
    uploaded = await upload(site, started["session"])
    admin = await people.add(role=Role.ADMIN)
    switched = await admin.http.patch(
        f"/v1/admin/inboxes/{inbox['id']}", json={"allow_attachments": False}
    )

    again = (await site.bootstrap(inbox["widget_token"], session=started["session"])).json()
    refused_upload = await site.http.post(
        "/api/widget/attachments",
        params={"session": started["session"]},
        files={"file": ("dot.png", PNG)},
    )
    refused_send = await site.http.post(
        "/api/widget/messages",
        json={
            "session": started["session"],
            "client_msg_id": "late",
            "body": "see attached",
            "attachment_ids": [uploaded["id"]],
        },
    )

    assert switched.status_code == 200, switched.text
    assert again["allow_attachments"] is False
    assert_error(refused_upload, 403, "ERR_ATTACHMENTS_DISABLED")
    assert_error(refused_send, 403, "ERR_ATTACHMENTS_DISABLED")


async def test_uploads_past_the_per_session_rate_get_429(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    session = (await site.bootstrap(inbox["widget_token"])).json()["session"]
    for _ in range(3):
        await upload(site, session)

    response = await site.http.post(
        "/api/widget/attachments", params={"session": session}, files={"file": ("d.png", PNG)}
    )

    assert_error(response, 429, "ERR_RATE_LIMITED")
    assert int(response.headers["Retry-After"]) >= 1


async def test_an_upload_without_a_file_field_is_refused(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    session = (await site.bootstrap(inbox["widget_token"])).json()["session"]

    response = await site.http.post(
        "/api/widget/attachments", params={"session": session}, files={"other": ("d.png", PNG)}
    )

    assert_error(response, 422, "ERR_VALIDATION")


async def test_an_empty_message_without_attachments_is_refused(people: PeopleFactory) -> None:
    _, inbox = await make_inbox(people)
    site = Site(people)
    session = (await site.bootstrap(inbox["widget_token"])).json()["session"]

    response = await site.send(session, "")

    assert_error(response, 422, "ERR_VALIDATION")
