"""Live chat (docs/livechat.md): branches, routing, the console REST, notes, staff events,
auto-assign and concurrent opens, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from parley.assembly import Services
from parley.core.audit import AuditFilter
from parley.core.models import Role
from parley.core.visitor_names import friendly_name
from parley.features.livechat.geoip import GeoIP
from parley.settings import Settings
from parley.storage.schema import widget_sessions
from tests.conftest import PeopleFactory, Person
from tests.support.streams import eventually

SITE = "https://shop.example.com"


@pytest.fixture
def settings(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    extra: dict[str, Any] = dict(getattr(request, "param", {}))
    if extra.pop("geoip", False):
        extra["geoip_database"] = write_geoip_database(tmp_path / "country.mmdb")
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        log_json=False,
        sqlite_synchronous="NORMAL",
        widget_poll_min_interval_seconds=0,
        widget_bootstrap_rate_per_ip="1000/minute",
        **extra,
    )


def write_geoip_database(path: Path) -> str:
    """A tiny GeoIP2-Country database: 81.0.0.0/8 is Germany, 82.0.0.0/8 Austria."""
    writer = MMDBWriter(ip_version=4, database_type="GeoIP2-Country")
    writer.insert_network(IPSet(["81.0.0.0/8"]), {"country": {"iso_code": "DE"}})
    writer.insert_network(IPSet(["82.0.0.0/8"]), {"registered_country": {"iso_code": "AT"}})
    writer.to_db_file(str(path))
    return str(path)


class Site:
    """A page embedding the widget, as a browser would call the Widget API."""

    def __init__(self, people: PeopleFactory, *, peer: str = "127.0.0.1") -> None:
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=people.app, client=(peer, 40000)),
            base_url="http://parley.test",
            headers={"Origin": SITE},
            timeout=30,
        )
        people.clients.append(self.http)

    async def open(self, widget_token: str, **extra: Any) -> dict[str, Any]:
        response = await self.http.post(
            "/api/widget/bootstrap", json={"widget_token": widget_token, **extra}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def send(self, session: str, body: str, client_msg_id: str) -> None:
        response = await self.http.post(
            "/api/widget/messages",
            json={"session": session, "client_msg_id": client_msg_id, "body": body},
        )
        assert response.status_code == 201, response.text


class Desk:
    """An admin with an inbox (and its operator) ready to take visitors."""

    def __init__(self, people: PeopleFactory, admin: Person, operator: Person) -> None:
        self.people = people
        self.admin = admin
        self.operator = operator

    @classmethod
    async def make(cls, people: PeopleFactory) -> Desk:
        return cls(people, await people.add(role=Role.ADMIN), await people.add())

    async def branch(self, name: str, operators: list[Person]) -> dict[str, Any]:
        response = await self.admin.http.post(
            "/v1/admin/branches",
            json={"name": name, "operators": [p.user.name for p in operators]},
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def inbox(self, **fields: Any) -> dict[str, Any]:
        response = await self.admin.http.post(
            "/v1/admin/inboxes",
            json={
                "name": "Shop",
                "allowed_domains": ["shop.example.com"],
                "operators": [self.operator.user.name],
                **fields,
            },
        )
        assert response.status_code == 201, response.text
        return dict(response.json())


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def console_list(person: Person, **params: Any) -> list[dict[str, Any]]:
    response = await person.http.get("/v1/livechat/conversations", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["conversations"])


# -- branches ------------------------------------------------------------------------------------


async def test_admins_create_list_and_rename_branches(people: PeopleFactory) -> None:
    desk = await Desk.make(people)

    branch = await desk.branch("Support RU", [desk.operator])
    renamed = await desk.admin.http.patch(
        f"/v1/admin/branches/{branch['id']}", json={"name": "Support RU/UA"}
    )
    listed = await desk.admin.http.get("/v1/admin/branches")

    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["operators"] == [desk.operator.user.name]
    assert [(b["name"], b["operators"]) for b in listed.json()["branches"]] == [
        ("Support RU/UA", [desk.operator.user.name])
    ]


async def test_branch_admin_refuses_others_unknown_users_and_taken_names(
    people: PeopleFactory,
) -> None:
    desk = await Desk.make(people)
    await desk.branch("Sales", [])

    as_operator = await desk.operator.http.post("/v1/admin/branches", json={"name": "Mine"})
    listed_by_operator = await desk.operator.http.get("/v1/admin/branches")
    unknown = await desk.admin.http.post(
        "/v1/admin/branches", json={"name": "Ghosts", "operators": ["nobody-here"]}
    )
    taken = await desk.admin.http.post("/v1/admin/branches", json={"name": "Sales"})
    missing = await desk.admin.http.patch("/v1/admin/branches/999", json={"name": "x"})

    assert_error(as_operator, 403, "ERR_FORBIDDEN")
    assert_error(listed_by_operator, 403, "ERR_FORBIDDEN")
    assert_error(unknown, 400, "ERR_VALIDATION")
    assert "nobody-here" in unknown.json()["error"]["message"]
    assert_error(taken, 409, "ERR_NAME_TAKEN")
    assert_error(missing, 404, "ERR_NOT_FOUND")


# -- inbox routing settings ----------------------------------------------------------------------


async def test_inbox_keeps_valid_routing_settings(people: PeopleFactory) -> None:
    desk = await Desk.make(people)
    branch = await desk.branch("DE", [])

    inbox = await desk.inbox(
        routing_rules=[{"language": "de", "country": "at", "branch_id": branch["id"]}],
        branch_id=branch["id"],
        auto_assign=True,
        allow_attachments=False,
    )
    cleared = await desk.admin.http.patch(
        f"/v1/admin/inboxes/{inbox['id']}", json={"branch_id": None, "routing_rules": []}
    )

    assert inbox["routing_rules"] == [
        {"language": "de", "country": "AT", "branch_id": branch["id"]}
    ]
    assert inbox["branch_id"] == branch["id"]
    assert inbox["auto_assign"] is True and inbox["allow_attachments"] is False
    assert cleared.json()["branch_id"] is None and cleared.json()["routing_rules"] == []


@pytest.mark.parametrize(
    ("fields", "code", "says"),
    [
        ({"routing_rules": [{"path": "/ru", "branch_id": 1}]}, "ERR_INVALID_VALUE", "unknown keys"),
        ({"routing_rules": [{"language": "ru"}]}, "ERR_INVALID_VALUE", "branch_id"),
        ({"routing_rules": [{"language": "ru", "branch_id": 4242}]}, "ERR_UNKNOWN_BRANCH", "4242"),
        ({"branch_id": 4242}, "ERR_UNKNOWN_BRANCH", "4242"),
    ],
)
async def test_inbox_refuses_bad_routing_settings_with_a_clear_400(
    people: PeopleFactory, fields: dict[str, Any], code: str, says: str
) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()

    created = await desk.admin.http.post("/v1/admin/inboxes", json={"name": "Bad", **fields})
    patched = await desk.admin.http.patch(f"/v1/admin/inboxes/{inbox['id']}", json=fields)

    for response in (created, patched):
        assert_error(response, 400, code)
        assert says in response.json()["error"]["message"]


# -- routing at bootstrap ------------------------------------------------------------------------


async def test_bootstrap_lands_in_the_branch_its_page_and_language_match(
    people: PeopleFactory,
) -> None:
    desk = await Desk.make(people)
    ru_agent, de_agent = await people.add(), await people.add()
    ru = await desk.branch("RU", [ru_agent])
    de = await desk.branch("DE", [de_agent])
    inbox = await desk.inbox(
        routing_rules=[
            {"url_prefix": "https://shop.example.com/ru/", "branch_id": ru["id"]},
            {"language": "de", "branch_id": de["id"]},
        ]
    )

    by_url = await Site(people).open(
        inbox["widget_token"], page_url="https://shop.example.com/ru/cart", language="de-DE"
    )
    by_language = await Site(people).open(
        inbox["widget_token"], page_url="https://shop.example.com/", language="DE-at"
    )
    unrouted = await Site(people).open(inbox["widget_token"], language="fr")

    items = {c["conversation_id"]: c for c in await console_list(desk.admin)}
    assert items[by_url["conversation_id"]]["branch"] == {"id": ru["id"], "name": "RU"}
    assert items[by_url["conversation_id"]]["page_url"] == "https://shop.example.com/ru/cart"
    assert items[by_language["conversation_id"]]["branch"] == {"id": de["id"], "name": "DE"}
    assert items[by_language["conversation_id"]]["language"] == "DE-at"
    assert items[unrouted["conversation_id"]]["branch"] is None
    # The branch's operators (and the inbox's) are members: they read the visitor's timeline.
    for agent, conversation_id, allowed in [
        (ru_agent, by_url["conversation_id"], True),
        (de_agent, by_url["conversation_id"], False),
        (de_agent, by_language["conversation_id"], True),
        (desk.operator, unrouted["conversation_id"], True),
    ]:
        read = await agent.http.get(f"/v1/conversations/{conversation_id}/messages")
        assert (read.status_code == 200) is allowed, (agent.user.name, read.text)


async def test_bootstrap_refuses_a_page_url_that_is_not_http(people: PeopleFactory) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()

    response = await Site(people).http.post(
        "/api/widget/bootstrap",
        json={"widget_token": inbox["widget_token"], "page_url": "javascript:alert(1)"},
    )

    assert_error(response, 422, "ERR_VALIDATION")


async def test_visitor_attributes_reach_the_console_as_given(people: PeopleFactory) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()
    attributes = {"name": "<b>Ann</b>", "email": "ann@example.com", "plan": "pro"}

    visit = await Site(people).open(inbox["widget_token"], attributes=attributes)

    (item,) = await console_list(desk.operator)
    assert item["conversation_id"] == visit["conversation_id"]
    assert item["attributes"] == attributes


@pytest.mark.parametrize(
    "attributes",
    [
        {f"k{i}": "v" for i in range(21)},
        {"bad key!": "v"},
        {"name": "x" * 501},
        {"name": {"nested": "x"}},
        ["name", "Ann"],
    ],
    ids=["too-many", "bad-key", "long-value", "nested", "not-an-object"],
)
async def test_bootstrap_refuses_bad_attributes_and_creates_nothing(
    people: PeopleFactory, attributes: Any
) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()

    response = await Site(people).http.post(
        "/api/widget/bootstrap",
        json={"widget_token": inbox["widget_token"], "attributes": attributes},
    )

    assert_error(response, 422, "ERR_VALIDATION")
    assert await console_list(desk.operator) == []


async def test_unmatched_conversation_falls_back_to_the_inbox_branch(
    people: PeopleFactory,
) -> None:
    desk = await Desk.make(people)
    agent = await people.add()
    branch = await desk.branch("Everyone", [agent])
    inbox = await desk.inbox(branch_id=branch["id"])

    opened = await Site(people).open(inbox["widget_token"])

    (item,) = await console_list(agent)
    assert item["conversation_id"] == opened["conversation_id"]
    assert item["branch"]["id"] == branch["id"]


@pytest.mark.parametrize("settings", [{"default_branch_id": 1}], indirect=True)
async def test_default_branch_takes_the_rest_and_readyz_says_when_it_is_missing(
    people: PeopleFactory,
) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()
    ready_before = await desk.admin.http.get("/readyz")

    agent = await people.add()
    branch = await desk.branch("Default", [agent])
    ready_after = await desk.admin.http.get("/readyz")
    opened = await Site(people).open(inbox["widget_token"])

    assert branch["id"] == 1
    assert ready_before.status_code == 200
    assert ready_before.json()["status"] == "degraded"
    assert (
        "PARLEY_DEFAULT_BRANCH_ID=1 names no branch"
        in ready_before.json()["checks"]["default_branch"]
    )
    assert ready_after.json()["status"] == "ok"
    assert ready_after.json()["checks"]["default_branch"] == "ok"
    (item,) = await console_list(agent)
    assert item["conversation_id"] == opened["conversation_id"]
    assert item["branch"] == {"id": 1, "name": "Default"}


def test_geoip_answers_the_country_of_known_networks_only(tmp_path: Path) -> None:
    geoip = GeoIP(write_geoip_database(tmp_path / "country.mmdb"))
    try:
        found = [geoip.country(ip) for ip in ("81.2.3.4", "82.9.9.9", "10.0.0.1", "not-an-ip")]
    finally:
        geoip.close()

    assert found == ["DE", "AT", None, None]
    assert GeoIP("").country("81.2.3.4") is None
    assert GeoIP(str(tmp_path / "missing.mmdb")).enabled is False


@pytest.mark.parametrize("settings", [{"geoip": True}], indirect=True)
async def test_country_rules_route_by_the_visitors_address(people: PeopleFactory) -> None:
    desk = await Desk.make(people)
    de_agent = await people.add()
    de = await desk.branch("DACH", [de_agent])
    inbox = await desk.inbox(routing_rules=[{"country": "DE", "branch_id": de["id"]}])

    from_germany = await Site(people, peer="81.2.3.4").open(inbox["widget_token"])
    from_elsewhere = await Site(people, peer="83.2.3.4").open(inbox["widget_token"])

    items = {c["conversation_id"]: c for c in await console_list(desk.admin)}
    assert items[from_germany["conversation_id"]]["country"] == "DE"
    assert items[from_germany["conversation_id"]]["branch"]["name"] == "DACH"
    assert items[from_elsewhere["conversation_id"]]["country"] is None
    assert items[from_elsewhere["conversation_id"]]["branch"] is None


# -- the console ---------------------------------------------------------------------------------


async def test_console_lists_filters_and_shows_the_last_message(people: PeopleFactory) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()
    other_inbox = await desk.inbox(name="Blog")
    first_site, second_site = Site(people), Site(people)
    first = await first_site.open(inbox["widget_token"])
    second = await second_site.open(inbox["widget_token"])
    await Site(people).open(other_inbox["widget_token"])
    await first_site.send(first["session"], "Where is my order?", "q1")
    await desk.operator.http.patch(
        f"/v1/livechat/conversations/{second['conversation_id']}",
        json={"status": "pending", "priority": "urgent"},
    )
    await desk.operator.http.post(
        f"/v1/livechat/conversations/{second['conversation_id']}/assign-me"
    )

    everything = await console_list(desk.operator, inbox_id=inbox["id"])
    pending = await console_list(desk.operator, status="pending")
    urgent = await console_list(desk.operator, priority="urgent")
    mine = await console_list(desk.operator, assignee="me")
    unassigned = await console_list(desk.operator, assignee="none", inbox_id=inbox["id"])
    by_id = await console_list(desk.admin, assignee=str(desk.operator.user.id))
    inboxes = await desk.operator.http.get("/v1/livechat/inboxes")

    assert [c["conversation_id"] for c in everything] == [
        first["conversation_id"],  # the latest message is the newest activity
        second["conversation_id"],
    ]
    top = everything[0]
    assert top["inbox_name"] == "Shop" and top["status"] == "open"
    assert top["visitor"] == {
        "id": first["visitor_id"],
        "name": friendly_name(first["visitor_id"]),
        "handle": first["visitor_name"],
    }
    assert top["last_message"]["body"] == "Where is my order?"
    assert top["last_message"]["sender_id"] == first["visitor_id"]
    assert top["last_message_at"] is not None
    assert [c["conversation_id"] for c in pending] == [second["conversation_id"]]
    assert [c["conversation_id"] for c in urgent] == [second["conversation_id"]]
    assert [c["conversation_id"] for c in mine] == [second["conversation_id"]]
    assert mine[0]["assignee"] == {"id": desk.operator.user.id, "name": desk.operator.user.name}
    assert [c["conversation_id"] for c in unassigned] == [first["conversation_id"]]
    assert [c["conversation_id"] for c in by_id] == [second["conversation_id"]]
    # The operator works in "Shop" (and in "Blog", since make() names them there too).
    assert {i["name"] for i in inboxes.json()["inboxes"]} == {"Shop", "Blog"}


async def test_the_open_and_pending_view_leaves_resolved_conversations_out(
    people: PeopleFactory,
) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()
    opened = [await Site(people).open(inbox["widget_token"]) for _ in range(3)]
    for visit, status in zip(opened[1:], ("pending", "resolved"), strict=True):
        response = await desk.operator.http.patch(
            f"/v1/livechat/conversations/{visit['conversation_id']}", json={"status": status}
        )
        assert response.status_code == 200, response.text

    active = await console_list(desk.operator, status="open,pending")
    bad = await desk.operator.http.get("/v1/livechat/conversations", params={"status": "open,gone"})

    assert {c["conversation_id"] for c in active} == {
        opened[0]["conversation_id"],
        opened[1]["conversation_id"],
    }
    assert_error(bad, 400, "ERR_INVALID_VALUE")


async def test_assigning_and_status_and_priority_changes_become_activity_for_all_staff(
    people: PeopleFactory,
) -> None:
    desk = await Desk.make(people)
    colleague = await people.add()
    inbox = await desk.inbox(operators=[desk.operator.user.name, colleague.user.name])
    opened = await Site(people).open(inbox["widget_token"])
    url = f"/v1/livechat/conversations/{opened['conversation_id']}"
    me, other = desk.operator.user, colleague.user

    await desk.operator.http.patch(url, json={"assignee_id": other.id})
    await desk.operator.http.patch(url, json={"status": "pending", "priority": "urgent"})
    await colleague.http.patch(url, json={"assignee_id": None})

    seen_by_colleague = (await colleague.http.get(f"{url}/activity")).json()["activity"]
    in_detail = (await desk.admin.http.get(url)).json()["activity"]
    assert [a["text"] for a in seen_by_colleague] == [
        f"{me.display_name} assigned this to {other.display_name}",
        f"{me.display_name} changed status from Open to Pending",
        f"{me.display_name} changed priority from Normal to Urgent",
        f"{other.display_name} unassigned this",
    ]
    assert in_detail == seen_by_colleague
    assert seen_by_colleague[0]["actor"] == {"id": me.id, "name": me.display_name}
    assert all(a["created_at"] for a in seen_by_colleague)


def test_visitor_names_are_friendly_and_the_same_for_the_same_id() -> None:
    names = {friendly_name(visitor_id) for visitor_id in range(1, 201)}
    assert friendly_name(42) == friendly_name(42)
    assert all(len(name.split()) == 2 and name.istitle() for name in names)
    assert len(names) > 150  # neighbours rarely share a name


async def test_console_refuses_bad_filter_and_patch_values_with_400(people: PeopleFactory) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()
    opened = await Site(people).open(inbox["widget_token"])
    url = f"/v1/livechat/conversations/{opened['conversation_id']}"

    bad_status = await desk.operator.http.patch(url, json={"status": "archived"})
    bad_priority = await desk.operator.http.patch(url, json={"priority": "critical"})
    bad_filter = await desk.operator.http.get(
        "/v1/livechat/conversations", params={"status": "archived"}
    )
    bad_assignee = await desk.operator.http.get(
        "/v1/livechat/conversations", params={"assignee": "someone"}
    )
    after = await desk.operator.http.get(url)

    for response in (bad_status, bad_priority, bad_filter, bad_assignee):
        assert_error(response, 400, "ERR_INVALID_VALUE")
    assert "open, pending, resolved, closed" in bad_status.json()["error"]["message"]
    assert (after.json()["status"], after.json()["priority"]) == ("open", "normal")


async def test_status_and_priority_move_through_every_value(people: PeopleFactory) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()
    opened = await Site(people).open(inbox["widget_token"])
    url = f"/v1/livechat/conversations/{opened['conversation_id']}"

    seen = []
    for status, priority in [
        ("pending", "low"),
        ("resolved", "high"),
        ("closed", "urgent"),
        ("open", "normal"),
    ]:
        response = await desk.operator.http.patch(
            url, json={"status": status, "priority": priority}
        )
        assert response.status_code == 200, response.text
        seen.append((response.json()["status"], response.json()["priority"]))

    assert seen == [
        ("pending", "low"),
        ("resolved", "high"),
        ("closed", "urgent"),
        ("open", "normal"),
    ]


async def test_assigning_other_staff_makes_them_a_member_and_non_staff_are_refused(
    people: PeopleFactory,
) -> None:
    desk = await Desk.make(people)
    agent = await people.add()
    outsider = await people.add()
    branch = await desk.branch("Team", [agent])
    inbox = await desk.inbox(branch_id=branch["id"])
    opened = await Site(people).open(inbox["widget_token"])
    url = f"/v1/livechat/conversations/{opened['conversation_id']}"
    staff = await desk.operator.http.get("/v1/livechat/staff", params={"inbox_id": inbox["id"]})

    to_admin = await desk.operator.http.patch(url, json={"assignee_id": desk.admin.user.id})
    admin_reads = await desk.admin.http.get(
        f"/v1/conversations/{opened['conversation_id']}/messages"
    )
    to_outsider = await desk.operator.http.patch(url, json={"assignee_id": outsider.user.id})
    unassigned = await desk.operator.http.patch(url, json={"assignee_id": None})

    names = {s["name"] for s in staff.json()["staff"]}
    assert names == {desk.admin.user.name, desk.operator.user.name, agent.user.name}
    assert all(s["online"] is False for s in staff.json()["staff"])
    assert to_admin.status_code == 200, to_admin.text
    assert to_admin.json()["assignee"]["id"] == desk.admin.user.id
    assert admin_reads.status_code == 200
    assert_error(to_outsider, 400, "ERR_VALIDATION")
    assert unassigned.json()["assignee"] is None


async def test_non_staff_and_the_visitor_get_404_on_the_console_and_notes(
    people: PeopleFactory, services: Services
) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()
    opened = await Site(people).open(inbox["widget_token"])
    await desk.operator.http.post(
        f"/v1/livechat/conversations/{opened['conversation_id']}/notes", json={"body": "VIP"}
    )
    outsider = await people.add()
    # The visitor is a member of the conversation; even with a bearer token they are not staff.
    visitor = await services.identity.users.get_user(opened["visitor_id"])
    assert visitor is not None
    as_visitor = people.client(await services.identity.do_issue_token(visitor))
    url = f"/v1/livechat/conversations/{opened['conversation_id']}"

    for client in (outsider.http, as_visitor):
        for response in (
            await client.get(url),
            await client.patch(url, json={"status": "closed"}),
            await client.post(f"{url}/assign-me"),
            await client.get(f"{url}/notes"),
            await client.get(f"{url}/activity"),
            await client.post(f"{url}/notes", json={"body": "sneaky"}),
            await client.get("/v1/livechat/staff", params={"inbox_id": inbox["id"]}),
        ):
            assert_error(response, 404, "ERR_NOT_FOUND")
        listed = await client.get("/v1/livechat/conversations")
        assert listed.json() == {"conversations": []}
        assert (await client.get("/v1/livechat/inboxes")).json() == {"inboxes": []}
    after = await desk.operator.http.get(url)
    assert after.json()["status"] == "open"
    assert [n["body"] for n in after.json()["notes"]] == ["VIP"]


async def test_notes_are_kept_for_staff_and_never_reach_the_visitor(
    people: PeopleFactory, services: Services
) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()
    site = Site(people)
    opened = await site.open(inbox["widget_token"])
    await site.send(opened["session"], "Hello?", "h1")
    url = f"/v1/livechat/conversations/{opened['conversation_id']}"

    created = await desk.operator.http.post(f"{url}/notes", json={"body": "SECRET-NOTE refund"})
    await desk.admin.http.post(f"{url}/notes", json={"body": "SECRET-NOTE agreed"})
    empty = await desk.operator.http.post(f"{url}/notes", json={"body": "   "})
    notes = await desk.operator.http.get(f"{url}/notes")
    detail = await desk.admin.http.get(url)

    assert created.status_code == 201, created.text
    note = created.json()
    assert note["conversation_id"] == opened["conversation_id"]
    assert note["author"] == {"id": desk.operator.user.id, "name": desk.operator.user.name}
    assert note["body"] == "SECRET-NOTE refund" and note["created_at"]
    assert_error(empty, 400, "ERR_INVALID_VALUE")
    assert [n["body"] for n in notes.json()["notes"]] == [
        "SECRET-NOTE refund",
        "SECRET-NOTE agreed",
    ]
    assert detail.json()["notes"] == notes.json()["notes"]
    # Everything the visitor can read: their poll, their message history, their /v1 views.
    visitor = await services.identity.users.get_user(opened["visitor_id"])
    assert visitor is not None
    as_visitor = people.client(await services.identity.do_issue_token(visitor))
    seen = [
        await site.http.get(
            "/api/widget/poll", params={"session": opened["session"], "cursor": "0", "timeout": 0}
        ),
        await site.http.get("/api/widget/messages", params={"session": opened["session"]}),
        await as_visitor.get(f"/v1/conversations/{opened['conversation_id']}/messages"),
        await as_visitor.get("/v1/conversations"),
        await as_visitor.get(f"/v1/conversations/{opened['conversation_id']}/members"),
    ]
    for response in seen:
        assert response.status_code == 200, (response.url, response.text)
        assert "SECRET-NOTE" not in response.text
        assert "livechat" not in response.text
    assert "Hello?" in seen[0].text and "Hello?" in seen[1].text


async def test_visitor_message_reopens_a_resolved_conversation(people: PeopleFactory) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()
    site = Site(people)
    opened = await site.open(inbox["widget_token"])
    url = f"/v1/livechat/conversations/{opened['conversation_id']}"
    await desk.operator.http.patch(url, json={"status": "resolved"})

    await site.send(opened["session"], "One more thing", "again")

    after = (await desk.operator.http.get(url)).json()
    assert after["status"] == "open"
    assert after["last_message"]["body"] == "One more thing"


async def test_staff_events_reach_operators_and_never_the_visitor(
    people: PeopleFactory, services: Services
) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()
    site = Site(people)
    opened = await site.open(inbox["widget_token"])
    url = f"/v1/livechat/conversations/{opened['conversation_id']}"
    # A first message moves the stream head, so the cursors below are past the conversation's
    # creation (a resume from before it would return at once with its backlog).
    await site.send(opened["session"], "Hello", "hello")
    operator_start = await desk.operator.http.get("/v1/stream/poll", params={"timeout": 0})
    visitor_start = await site.http.get("/api/widget/poll", params={"session": opened["session"]})

    operator_poll = asyncio.create_task(
        desk.operator.http.get(
            "/v1/stream/poll",
            params={"cursor": operator_start.json()["cursor"], "timeout": 20},
        )
    )
    visitor_poll = asyncio.create_task(
        site.http.get(
            "/api/widget/poll",
            params={
                "session": opened["session"],
                "cursor": visitor_start.json()["cursor"],
                "timeout": 20,
            },
        )
    )
    listening = {desk.operator.user.id, opened["visitor_id"]}
    await eventually(
        lambda: listening <= {s.user_id for s in services.stream.live_hub.subscriptions()},
        what="both long polls to subscribe",
    )
    await desk.operator.http.post(f"{url}/notes", json={"body": "SECRET-NOTE"})
    operator_events = (await operator_poll).json()["events"]
    # A message the visitor must get: if the note had been sent to them, it would come first.
    await desk.operator.http.post(
        f"/v1/conversations/{opened['conversation_id']}/messages",
        json={"client_msg_id": "reply-1", "body": "Hi, how can I help?"},
    )
    visitor_events = (await visitor_poll).json()["events"]

    assert [e["type"] for e in operator_events][:1] == ["livechat.note"]
    assert operator_events[0]["note"]["body"] == "SECRET-NOTE"
    assert [e["type"] for e in visitor_events] == ["message"]
    assert visitor_events[0]["message"]["body"] == "Hi, how can I help?"


async def test_opening_changes_and_visitor_messages_are_announced_to_staff_only(
    people: PeopleFactory, services: Services
) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()
    operator_stream = await services.stream.open(desk.operator.user, cursor=None, transport="sse")
    admin_stream = await services.stream.open(desk.admin.user, cursor=None, transport="sse")
    heard: list[dict[str, Any]] = []
    admin_heard: list[dict[str, Any]] = []

    async def announced(count: int) -> list[dict[str, Any]]:
        heard.extend(json.loads(e.data) for e in await operator_stream.sub.wait(timeout=0))
        found = [e["conversation"] for e in heard if e["type"] == "livechat.conversation"]
        return found if len(found) >= count else []

    async def admin_announced(count: int) -> list[dict[str, Any]]:
        admin_heard.extend(json.loads(e.data) for e in await admin_stream.sub.wait(timeout=0))
        found = [e["conversation"] for e in admin_heard if e["type"] == "livechat.conversation"]
        return found if len(found) >= count else []

    async def operator_got_message() -> bool:
        heard.extend(json.loads(e.data) for e in await operator_stream.sub.wait(timeout=0))
        return any(e["type"] == "message" for e in heard)

    try:
        site = Site(people)
        opened = await site.open(inbox["widget_token"], page_url="https://shop.example.com/a")
        visitor = await services.identity.users.get_user(opened["visitor_id"])
        assert visitor is not None
        visitor_stream = await services.stream.open(visitor, cursor=None, transport="sse")
        try:
            (on_open,) = await eventually(lambda: announced(1), what="the opening")
            await desk.operator.http.patch(
                f"/v1/livechat/conversations/{opened['conversation_id']}",
                json={"priority": "high"},
            )
            changes = await eventually(lambda: announced(2), what="the change")
            await site.send(opened["session"], "Anyone there?", "q1")
            # The admin is staff but no member: the announcement is how they hear of it.
            admin_changes = await eventually(lambda: admin_announced(3), what="the message")
            await eventually(operator_got_message, what="the message, to the operator")
            visitor_heard = [
                json.loads(e.data)["type"] for e in await visitor_stream.sub.wait(timeout=0)
            ]
        finally:
            await services.stream.close(visitor_stream)
        await services.livechat.stop()  # announcements under way have finished
        heard.extend(json.loads(e.data) for e in await operator_stream.sub.wait(timeout=0))
    finally:
        await services.stream.close(operator_stream)
        await services.stream.close(admin_stream)

    assert on_open["conversation_id"] == opened["conversation_id"]
    assert on_open["page_url"] == "https://shop.example.com/a"
    assert on_open["status"] == "open" and on_open["last_message"] is None
    assert changes[1]["priority"] == "high"
    assert admin_changes[2]["last_message"]["body"] == "Anyone there?"
    # The operator, a member, hears the message itself, and no second wake-up for it.
    kinds = [e["type"] for e in heard]
    assert kinds.count("livechat.conversation") == 2
    assert [e["message"]["body"] for e in heard if e["type"] == "message"] == ["Anyone there?"]
    assert "message" in visitor_heard
    assert not [kind for kind in visitor_heard if kind.startswith("livechat.")]


async def test_a_visitor_writing_in_a_resolved_chat_reopens_it_for_every_operator(
    people: PeopleFactory, services: Services
) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()
    site = Site(people)
    opened = await site.open(inbox["widget_token"])
    url = f"/v1/livechat/conversations/{opened['conversation_id']}"
    resolved = await desk.operator.http.patch(url, json={"status": "resolved"})
    assert resolved.status_code == 200, resolved.text
    await services.livechat.stop()
    operator_stream = await services.stream.open(desk.operator.user, cursor=None, transport="sse")
    heard: list[dict[str, Any]] = []

    async def reopened() -> list[dict[str, Any]]:
        heard.extend(json.loads(e.data) for e in await operator_stream.sub.wait(timeout=0))
        return [e["conversation"] for e in heard if e["type"] == "livechat.conversation"]

    try:
        await site.send(opened["session"], "Me again", "again-1")
        (announced,) = await eventually(reopened, what="the reopening")
    finally:
        await services.stream.close(operator_stream)

    assert announced["status"] == "open"
    assert announced["last_message"]["body"] == "Me again"


# -- auto-assign ---------------------------------------------------------------------------------


async def test_auto_assign_picks_the_online_operator_with_the_fewest_open(
    people: PeopleFactory, services: Services
) -> None:
    desk = await Desk.make(people)
    first, second = await people.add(), await people.add()
    branch = await desk.branch("Auto", [first, second])
    inbox = await desk.inbox(branch_id=branch["id"], auto_assign=True)

    async def assignee_of_new_visitor() -> int | None:
        opened = await Site(people).open(inbox["widget_token"])
        item = (
            await desk.admin.http.get(f"/v1/livechat/conversations/{opened['conversation_id']}")
        ).json()
        return item["assignee"]["id"] if item["assignee"] else None

    nobody_online = await assignee_of_new_visitor()
    # An open SSE or WebSocket stream is what makes an operator "online" (a long poll is not).
    first_session = await services.stream.open(first.user, cursor=None, transport="sse")
    try:
        only_first_online = [await assignee_of_new_visitor(), await assignee_of_new_visitor()]
        second_session = await services.stream.open(second.user, cursor=None, transport="sse")
        try:
            both_online = await assignee_of_new_visitor()
            staff = await desk.admin.http.get(
                "/v1/livechat/staff", params={"inbox_id": inbox["id"]}
            )
        finally:
            await services.stream.close(second_session)
    finally:
        await services.stream.close(first_session)

    assert nobody_online is None
    assert only_first_online == [first.user.id, first.user.id]
    assert both_online == second.user.id  # two open for `first`, none for `second`
    online = {s["name"]: s["online"] for s in staff.json()["staff"]}
    assert online[first.user.name] and online[second.user.name]
    assert not online[desk.admin.user.name]


# -- concurrency ---------------------------------------------------------------------------------


async def test_concurrent_opens_for_one_visitor_make_one_conversation(
    people: PeopleFactory, services: Services
) -> None:
    desk = await Desk.make(people)
    created = await desk.inbox()
    inbox = await services.inboxes.store.get_inbox(created["id"])
    assert inbox is not None
    visitor = await services.identity.do_create_user("visitor-race", role=Role.MEMBER)

    ids = await asyncio.gather(
        *[
            services.livechat.do_open(
                inbox, visitor, page_url=None, language=None, client_ip="", attributes={}
            )
            for _ in range(12)
        ]
    )

    assert len(set(ids)) == 1
    # No orphan: the visitor is in exactly one conversation, the console lists exactly one.
    assert [s.conversation.id for s in await services.timeline.list_conversations(visitor)] == [
        ids[0]
    ]
    assert [c["conversation_id"] for c in await console_list(desk.admin)] == [ids[0]]


async def test_pruning_removes_only_idle_empty_anonymous_visits(people: PeopleFactory) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()
    site = Site(people)
    empty = await site.open(inbox["widget_token"])
    talked = await site.open(inbox["widget_token"])
    await site.send(talked["session"], "hello?", "p1")
    recent = await site.open(inbox["widget_token"])
    store = people.services.inboxes.store
    async with people.services.db.write() as conn:
        await conn.execute(
            widget_sessions.update()
            .where(widget_sessions.c.visitor_id.in_([empty["visitor_id"], talked["visitor_id"]]))
            .values(last_seen_at=datetime.now(UTC) - timedelta(days=40))
        )

    pruned = await store.prune_idle_visits(datetime.now(UTC) - timedelta(days=30))

    assert pruned == 1
    listed = {item["conversation_id"] for item in await console_list(desk.operator)}
    assert listed == {talked["conversation_id"], recent["conversation_id"]}
    assert await people.services.identity.users.get_user(empty["visitor_id"]) is None
    restored = await site.open(inbox["widget_token"], session=talked["session"])
    assert restored["restored"] is True
    again = await site.open(inbox["widget_token"], session=empty["session"])
    assert again["restored"] is False
    assert await store.prune_idle_visits(datetime.now(UTC) - timedelta(days=30)) == 0


async def test_the_operators_conversation_list_marks_visitor_conversations_live_chat(
    people: PeopleFactory,
) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()
    site = Site(people)
    opened = await site.open(inbox["widget_token"])
    await site.send(opened["session"], "Hello shop", "first")
    room = await desk.operator.http.post(
        "/v1/conversations", json={"kind": "room", "title": "Team", "members": []}
    )
    assert room.status_code == 201, room.text

    listed = (await desk.operator.http.get("/v1/conversations")).json()["conversations"]

    live_chat = {c["id"]: c["live_chat"] for c in listed}
    assert live_chat == {opened["conversation_id"]: True, room.json()["id"]: False}


async def test_admins_keep_canned_replies_per_inbox_and_its_staff_read_them(
    people: PeopleFactory, services: Services
) -> None:
    desk = await Desk.make(people)
    inbox = await desk.inbox()
    other = await desk.inbox(name="Blog", operators=[])
    outsider = await people.add()
    url = f"/v1/livechat/inboxes/{inbox['id']}/canned-replies"

    hello = {"shortcut": "hi", "body": "Hello! How can I help?"}
    added = await desk.admin.http.post(url, json=hello)
    again = await desk.admin.http.post(url, json={"shortcut": "hi", "body": "Hi"})
    bad = await desk.admin.http.post(url, json={"shortcut": "Hi there", "body": "Hi"})
    by_operator = await desk.operator.http.post(url, json={"shortcut": "x", "body": "x"})
    listed = await desk.operator.http.get(url)
    not_theirs = await desk.operator.http.get(f"/v1/livechat/inboxes/{other['id']}/canned-replies")
    by_outsider = await outsider.http.get(url)
    operator_delete = await desk.operator.http.delete(f"{url}/{added.json()['id']}")

    assert added.status_code == 201, added.text
    assert_error(again, 409, "ERR_CONFLICT")
    assert bad.status_code == 422  # the schema's pattern, like every other malformed body
    assert_error(by_operator, 403, "ERR_FORBIDDEN")
    assert [(r["shortcut"], r["body"]) for r in listed.json()["canned_replies"]] == [
        ("hi", "Hello! How can I help?")
    ]
    assert_error(not_theirs, 404, "ERR_NOT_FOUND")
    assert_error(by_outsider, 404, "ERR_NOT_FOUND")
    assert_error(operator_delete, 403, "ERR_FORBIDDEN")
    deleted = await desk.admin.http.delete(f"{url}/{added.json()['id']}")
    assert deleted.status_code == 204
    assert (await desk.operator.http.get(url)).json() == {"canned_replies": []}
    actions = [e.action for e in await services.audit.search(None, AuditFilter(action="canned"))]
    assert sorted(actions) == ["canned_reply.add", "canned_reply.delete"]
