"""Maintenance mode (docs/operations.md): the API answers 503 with Retry-After and the message,
health stays up, staff still sign in and work, only admins switch it, every switch is audited —
and one switch reaches every node and every open stream."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from parley.app import create_app
from parley.cli import app
from parley.core.models import Role
from parley.settings import Settings
from tests.conftest import PeopleFactory, Person, create_conversation
from tests.integration.stored import assert_error
from tests.support.accounts import create_users
from tests.support.servers import ServerProcess, free_port
from tests.support.streams import WsReader
from tests.support.waiting import eventually


async def switch(admin: Person, active: bool, **extra: Any) -> dict[str, Any]:
    response = await admin.http.put("/v1/admin/maintenance", json={"active": active, **extra})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_members_get_503_with_retry_after_and_the_message_while_health_stays_up(
    people: PeopleFactory,
) -> None:
    admin, member = await people.add(role=Role.ADMIN), await people.add()
    cid = await create_conversation(member, admin)
    anonymous = people.client()

    await switch(admin, True, message="Upgrading to 2.0, back at 04:00 UTC", retry_after=120)
    refused = await member.http.get("/v1/conversations")
    send = await member.http.post(
        f"/v1/conversations/{cid}/messages", json={"client_msg_id": "m1", "body": "hi"}
    )
    widget = await anonymous.post("/api/widget/bootstrap", json={"widget_token": "wt_x"})
    status = await anonymous.get("/v1/maintenance")

    error = assert_error(refused, 503, "ERR_MAINTENANCE")
    assert error["message"] == "Upgrading to 2.0, back at 04:00 UTC"
    assert refused.headers["retry-after"] == "120" and error["retry_after"] == 120
    assert_error(send, 503, "ERR_MAINTENANCE")
    assert_error(widget, 503, "ERR_MAINTENANCE")
    assert widget.headers["access-control-allow-origin"] == "*"  # the widget can read it
    assert status.status_code == 200 and status.json()["active"] is True
    assert status.json()["message"] == "Upgrading to 2.0, back at 04:00 UTC"
    assert "actor" not in status.json()
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await anonymous.get(path)).status_code == 200, path
    assert "parley_maintenance_active 1.0" in (await anonymous.get("/metrics")).text

    await switch(admin, False)
    assert (await member.http.get("/v1/conversations")).status_code == 200
    messages = (await member.http.get(f"/v1/conversations/{cid}/messages")).json()
    assert messages["messages"] == []  # the refused send stored nothing
    assert (await anonymous.get("/v1/maintenance")).json()["active"] is False


async def test_staff_still_sign_in_and_work_while_members_cannot_sign_in(
    people: PeopleFactory,
) -> None:
    admin = await people.add(role=Role.ADMIN)
    operator = await people.add(role=Role.OPERATOR)
    member = await people.add()
    cid = await create_conversation(operator, member)
    await switch(admin, True)
    anonymous = people.client()

    staff_login = await anonymous.post(
        "/v1/auth/login", json={"name": operator.user.name, "password": f"pw-{operator.user.name}"}
    )
    member_login = await anonymous.post(
        "/v1/auth/login", json={"name": member.user.name, "password": f"pw-{member.user.name}"}
    )
    sent = await operator.http.post(
        f"/v1/conversations/{cid}/messages", json={"client_msg_id": "s1", "body": "checking"}
    )

    assert staff_login.status_code == 200, staff_login.text
    fresh = people.client(staff_login.json()["token"])
    assert (await fresh.get("/v1/me")).status_code == 200
    error = assert_error(member_login, 503, "ERR_MAINTENANCE")
    assert error["message"]  # the default message when none was given
    assert sent.status_code == 201, sent.text


async def test_only_admins_read_and_switch_maintenance_and_each_switch_is_audited(
    people: PeopleFactory,
) -> None:
    admin = await people.add(role=Role.ADMIN)
    operator = await people.add(role=Role.OPERATOR)
    member = await people.add()

    for person in (operator, member):
        refused = await person.http.put("/v1/admin/maintenance", json={"active": True})
        assert_error(refused, 403, "ERR_FORBIDDEN")
        assert_error(await person.http.get("/v1/admin/maintenance"), 403, "ERR_FORBIDDEN")
    assert_error(
        await people.client().put("/v1/admin/maintenance", json={"active": True}),
        401,
        "ERR_UNAUTHENTICATED",
    )
    bad = await admin.http.put("/v1/admin/maintenance", json={"active": True, "message": "x" * 501})
    assert_error(bad, 422, "ERR_VALIDATION")
    assert (await people.client().get("/v1/maintenance")).json()["active"] is False

    on = await switch(admin, True, message="DB upgrade", reason="go-live step 1")
    off = await switch(admin, False, reason="smoke passed")
    entries = (await admin.http.get("/v1/admin/audit", params={"action": "maintenance."})).json()[
        "entries"
    ]

    assert on["actor"] == admin.user.name and on["since"] is not None
    assert off["active"] is False
    assert [e["action"] for e in entries] == ["maintenance.off", "maintenance.on"]
    assert entries[1]["actor"] == admin.user.name and entries[1]["reason"] == "go-live step 1"
    assert entries[1]["after"]["message"] == "DB upgrade" and entries[1]["after"]["active"]
    assert entries[0]["before"]["active"] is True and entries[0]["after"] == {"active": False}


async def test_a_switch_made_on_one_node_reaches_another(
    people: PeopleFactory, settings: Settings
) -> None:
    admin, member = await people.add(role=Role.ADMIN), await people.add()
    other = create_app(settings.model_copy(update={"maintenance_poll_seconds": 0.05}))
    async with other.router.lifespan_context(other):
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=other),
            base_url="http://node-b.test",
            headers={"Authorization": f"Bearer {member.token}"},
        )
        async with client:
            assert (await client.get("/v1/conversations")).status_code == 200
            await switch(admin, True, message="node A said so")

            async def refused_on_b() -> bool:
                return (await client.get("/v1/conversations")).status_code == 503

            await eventually(refused_on_b, timeout=10, what="node B in maintenance")
            answer = (await client.get("/v1/conversations")).json()["error"]
            assert answer["message"] == "node A said so"


# -- real servers: streams, and the CLI switching every node ---------------------------------------


runner = CliRunner()


async def _parley(env: dict[str, str], *args: str) -> str:
    """Run the CLI in-process (in a thread: it runs its own event loop) with `env`."""

    def invoke() -> str:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.output

    return await asyncio.to_thread(invoke)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two server processes on one embedded database (the switch lives in it)."""
    workdir = tmp_path_factory.mktemp("maintenance")
    env = {
        "PARLEY_LOG_JSON": "false",
        "PARLEY_MAINTENANCE_POLL_SECONDS": "0.2",
        "PARLEY_DATA_DIR": str(workdir / "var"),
        "PARLEY_DATABASE_URL": "",
        "COLUMNS": "200",
    }
    tokens = create_users(
        Settings(data_dir=workdir / "var"),
        {"ops": Role.ADMIN, "olga": Role.OPERATOR, "max": Role.MEMBER},
    )
    servers = [ServerProcess(port=free_port(), workdir=workdir, env=env) for _ in range(2)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # both start at once
        nodes = list(pool.map(ServerProcess.start, servers))
    yield {"env": env, "tokens": tokens, "nodes": nodes}
    for node in nodes:
        node.stop()


async def test_the_cli_switch_reaches_every_node_and_closes_member_streams_only(
    two_nodes: dict[str, Any],
) -> None:
    env, tokens = two_nodes["env"], two_nodes["tokens"]
    node_a, node_b = two_nodes["nodes"]
    member_ws = await WsReader(node_b.url, tokens["max"]).opened()
    staff_ws = await WsReader(node_b.url, tokens["olga"]).opened()
    try:
        on = await _parley(env, "maintenance", "on", "--message", "Back at 04:00")
        assert "ON" in on and "Back at 04:00" in on

        await member_ws.wait_ended()
        notice = await staff_ws.wait_for_event(lambda e: e.get("op") == "maintenance")
        member = httpx.AsyncClient(headers={"Authorization": f"Bearer {tokens['max']}"})
        for node in (node_a, node_b):
            # Each node reads the switch on its own (every PARLEY_MAINTENANCE_POLL_SECONDS).
            async def refused(url: str = node.url) -> bool:
                answer = await member.get(f"{url}/v1/conversations")
                return (
                    answer.status_code == 503
                    and answer.json()["error"]["code"] == "ERR_MAINTENANCE"
                )

            await eventually(refused, what=f"{node.url} to refuse members")
        again = await WsReader(node_a.url, tokens["max"]).opened()
        await again.wait_ended()
        sse = await member.get(f"{node_a.url}/v1/stream/sse")
        await member.aclose()

        assert member_ws.of_type("control")[0] == {
            "type": "control",
            "op": "maintenance",
            "mode": "on",
            "reason": "Back at 04:00",
        }
        assert member_ws.close_code == 1012  # told to reconnect: it will meet the 503 below
        assert notice["mode"] == "on" and not staff_ws.ended.is_set()
        refusal = again.of_type("error")[0]
        assert refusal["code"] == "ERR_MAINTENANCE" and refusal["retry_after"] == 300
        assert sse.status_code == 503 and sse.headers["retry-after"] == "300"
        assert '"active": true' in await _parley(env, "maintenance", "status", "--json")
    finally:
        await member_ws.close()
        await staff_ws.close()
        await _parley(env, "maintenance", "off")

    async def member_streams_again() -> bool:
        reader = await WsReader(node_b.url, tokens["max"]).opened()
        await reader.close()
        return reader.events[0]["type"] == "hello"

    await eventually(member_streams_again, timeout=10, what="members streaming after `off`")
