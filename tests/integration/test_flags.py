"""Feature flags over HTTP: evaluation per caller, admin changes, the transport switch, and the
`flags.updated` event — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from parley.assembly import Services
from parley.core.flags import bucket
from parley.core.models import Role
from tests.conftest import PeopleFactory, Person
from tests.support.streams import eventually

BUILT_IN = {
    "chat_dark_launch",
    "chat_notifications_beta",
    "dispute_tools_v2",
    "chat_full_release",
    "transport_sse_only",
}


async def _flags(person: Person, **params: Any) -> dict[str, Any]:
    response = await person.http.get("/v1/flags", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json()["flags"])


async def _change(admin: Person, key: str, **changes: Any) -> dict[str, Any]:
    response = await admin.http.put(f"/v1/admin/flags/{key}", json=changes)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _internal(people: PeopleFactory, services: Services, name: str) -> Person:
    user = await services.identity.do_create_user(name, internal=True)
    token = await services.identity.do_issue_token(user)
    return Person(user=user, token=token, http=people.client(token))


async def test_built_in_flags_are_seeded_off_for_everyone(people: PeopleFactory) -> None:
    member = await people.add()

    flags = await _flags(member)

    assert set(flags) == BUILT_IN
    assert all(flag == {"value": False, "reason": "off"} for flag in flags.values())


async def test_dark_launch_reaches_internal_users_only(
    people: PeopleFactory, services: Services
) -> None:
    admin, member = await people.add(role=Role.ADMIN), await people.add()
    staff = await _internal(people, services, "staffer")

    changed = await _change(admin, "chat_dark_launch", enabled=True)

    assert changed["enabled"] and changed["internal_only"]
    assert changed["updated_by"] == admin.user.name
    assert (await _flags(staff))["chat_dark_launch"] == {"value": True, "reason": "on"}
    assert (await _flags(member))["chat_dark_launch"] == {
        "value": False,
        "reason": "internal_only",
    }


async def test_dispute_tools_follow_the_role_and_the_allow_list(people: PeopleFactory) -> None:
    admin = await people.add(role=Role.ADMIN)
    officer, member, friend = (
        await people.add(role=Role.DISPUTE_OPS),
        await people.add(),
        await people.add(),
    )

    await _change(admin, "dispute_tools_v2", enabled=True, allow_users=[friend.user.id])

    assert (await _flags(officer))["dispute_tools_v2"]["value"] is True
    assert (await _flags(member))["dispute_tools_v2"] == {"value": False, "reason": "role"}
    assert (await _flags(friend))["dispute_tools_v2"] == {"value": True, "reason": "allow_list"}


async def test_notifications_beta_buckets_contracts_and_can_be_asked_for_another_user(
    people: PeopleFactory,
) -> None:
    admin, member = await people.add(role=Role.ADMIN), await people.add()
    await _change(admin, "chat_notifications_beta", enabled=True)
    inside = next(f"c{i}" for i in range(1000) if bucket(f"c{i}", "chat_notifications_beta") <= 5)
    outside = next(f"c{i}" for i in range(1000) if bucket(f"c{i}", "chat_notifications_beta") > 5)

    assert (await _flags(member, contract=inside))["chat_notifications_beta"]["value"] is True
    assert (await _flags(member, contract=outside))["chat_notifications_beta"] == {
        "value": False,
        "reason": "outside_percentage",
    }
    assert (await _flags(member))["chat_notifications_beta"]["reason"] == "no_key"
    as_member = await _flags(admin, as_user=member.user.id, contract=inside)
    assert as_member["chat_notifications_beta"]["value"] is True


async def test_only_admins_change_flags_or_evaluate_for_others(people: PeopleFactory) -> None:
    member, other = await people.add(), await people.add()

    changed = await member.http.put("/v1/admin/flags/chat_dark_launch", json={"enabled": True})
    peeked = await member.http.get("/v1/flags", params={"as_user": other.user.id})

    assert changed.status_code == 403
    assert peeked.status_code == 403
    assert (await member.http.get("/v1/admin/flags")).status_code == 403


async def test_the_release_flag_is_sized_by_the_rollout_not_by_hand(people: PeopleFactory) -> None:
    admin = await people.add(role=Role.ADMIN)

    response = await admin.http.put(
        "/v1/admin/flags/chat_full_release", json={"enabled": True, "percentage": 100}
    )

    assert response.status_code == 409
    assert "rollout" in response.json()["error"]["message"]


async def test_transport_flag_and_admin_transport_switch_are_one_switch(
    people: PeopleFactory,
) -> None:
    admin, member = await people.add(role=Role.ADMIN), await people.add()

    switched = await admin.http.put("/v1/admin/transport", json={"mode": "sse_only"})
    assert switched.status_code == 200
    listed = {f["key"]: f for f in (await admin.http.get("/v1/admin/flags")).json()}
    assert listed["transport_sse_only"]["enabled"] is True
    assert (await _flags(member))["transport_sse_only"]["value"] is True

    await _change(admin, "transport_sse_only", enabled=False)
    assert (await admin.http.get("/v1/admin/transport")).json() == {"mode": "auto"}
    assert (await _flags(member))["transport_sse_only"]["value"] is False


async def test_a_flag_change_reaches_connected_clients_as_flags_updated(
    people: PeopleFactory, services: Services
) -> None:
    admin, member = await people.add(role=Role.ADMIN), await people.add()
    first = await member.http.get("/v1/stream/poll")
    cursor = first.json()["cursor"]
    waiting = asyncio.create_task(
        member.http.get("/v1/stream/poll", params={"cursor": cursor, "timeout": 15})
    )
    await eventually(
        lambda: services.stream.live_hub.count_for_user(member.user.id) > 0,
        what="the long-poll to subscribe",
    )

    await _change(admin, "chat_dark_launch", enabled=True)

    events = (await waiting).json()["events"]
    updates = [e for e in events if e["type"] == "flags.updated"]
    assert updates and updates[0]["keys"] == ["chat_dark_launch"]
    assert updates[0]["revision"] > 1


async def test_other_services_evaluate_the_same_flags_through_openfeature(
    people: PeopleFactory,
) -> None:
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.flag_evaluation import Reason

    from parley.features.release.openfeature import ParleyProvider

    admin, officer = await people.add(role=Role.ADMIN), await people.add(role=Role.DISPUTE_OPS)
    await _change(admin, "dispute_tools_v2", enabled=True)
    await _change(admin, "chat_notifications_beta", enabled=True)
    inside = next(f"c{i}" for i in range(1000) if bucket(f"c{i}", "chat_notifications_beta") <= 5)
    provider = ParleyProvider("http://parley.test", admin.token, async_http=people.client())
    api.set_provider(provider, domain="parley-test")
    client = api.get_client(domain="parley-test")
    try:
        beta = await client.get_boolean_details_async(
            "chat_notifications_beta", False, EvaluationContext(attributes={"contract": inside})
        )
        for_officer = await client.get_boolean_value_async(
            "dispute_tools_v2", False, EvaluationContext(targeting_key=str(officer.user.id))
        )
        for_admin = await client.get_boolean_details_async("dispute_tools_v2", True)
        missing = await client.get_boolean_details_async("no_such_flag", True)
    finally:
        api.clear_providers()

    assert beta.value is True and beta.reason == Reason.SPLIT
    assert for_officer is True
    assert for_admin.value is False and for_admin.flag_metadata["parley_reason"] == "role"
    assert missing.value is True and missing.error_code == "FLAG_NOT_FOUND"
