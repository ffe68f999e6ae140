"""The audit log (docs/audit.md): staff actions land in it with who, what, before/after and why;
only admins read it; nothing can change or delete an entry — on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from parley.assembly import Services
from parley.core.models import Role
from tests.conftest import PeopleFactory, Person


async def audit(person: Person, **params: Any) -> list[dict[str, Any]]:
    response = await person.http.get("/v1/admin/audit", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["entries"])


async def make_inbox(admin: Person, operator: Person) -> dict[str, Any]:
    response = await admin.http.post(
        "/v1/admin/inboxes",
        json={
            "name": "Shop",
            "allowed_domains": ["shop.example.com"],
            "operators": [operator.user.name],
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_inbox_changes_are_recorded_with_actor_before_and_after(
    people: PeopleFactory,
) -> None:
    admin, operator = await people.add(role=Role.ADMIN), await people.add()
    inbox = await make_inbox(admin, operator)
    patched = await admin.http.patch(
        f"/v1/admin/inboxes/{inbox['id']}", json={"enabled": False, "offline_message": "Bye"}
    )
    assert patched.status_code == 200, patched.text

    newest, created = await audit(admin, target_kind="inbox", target_id=str(inbox["id"]))
    assert created["action"] == "inbox.create"
    assert created["actor"] == admin.user.name and created["actor_id"] == admin.user.id
    assert created["after"]["allowed_domains"] == ["shop.example.com"]
    assert newest["action"] == "inbox.update"
    assert newest["before"] == {"enabled": True, "offline_message": ""}
    assert newest["after"] == {"enabled": False, "offline_message": "Bye"}
    assert newest["source"] == "api"


async def test_identity_secret_rotation_is_recorded_without_the_secret(
    people: PeopleFactory,
) -> None:
    admin, operator = await people.add(role=Role.ADMIN), await people.add()
    inbox = await make_inbox(admin, operator)
    rotated = await admin.http.post(f"/v1/admin/inboxes/{inbox['id']}/identity-secret")
    secret = rotated.json()["identity_secret"]
    await admin.http.delete(f"/v1/admin/inboxes/{inbox['id']}/identity-secret")

    entries = await audit(admin, action="inbox.identity_secret")
    assert [e["action"] for e in entries] == [
        "inbox.identity_secret_remove",
        "inbox.identity_secret_rotate",
    ]
    assert entries[1]["after"] == {"identity_verification": True}
    everything = (await admin.http.get("/v1/admin/audit/export")).text
    assert secret not in everything


async def test_flag_and_rollout_changes_say_who_and_what_changed(people: PeopleFactory) -> None:
    admin = await people.add(role=Role.ADMIN)
    changed = await admin.http.put(
        "/v1/admin/flags/dispute_tools_v2", json={"enabled": True, "percentage": 25}
    )
    assert changed.status_code == 200, changed.text
    promoted = await admin.http.post(  # no client data yet: only an override starts it
        "/v1/admin/release/promote",
        json={"reason": "start canary", "owner": "rel-owner", "override": True},
    )
    assert promoted.status_code == 200, promoted.text
    killed = await admin.http.post("/v1/admin/release/kill", json={"reason": "P0 in canary"})
    assert killed.status_code == 200, killed.text

    kill, promote, flag = await audit(admin, limit=3)
    assert flag["action"] == "flag.update" and flag["target_id"] == "dispute_tools_v2"
    assert flag["after"] == {"enabled": True, "percentage": 25}
    assert flag["before"]["percentage"] != 25
    assert promote["action"] == "rollout.promote"
    assert promote["before"]["stage"] == "off" and promote["after"]["stage"] == "canary_1"
    assert promote["after"]["owner"] == "rel-owner"
    assert promote["reason"].startswith("ADMIN OVERRIDE") and "start canary" in promote["reason"]
    assert kill["action"] == "rollout.kill" and kill["after"]["killed"] is True
    assert kill["reason"] == "P0 in canary" and kill["actor_id"] == admin.user.id


async def test_a_refused_promotion_is_recorded_too(people: PeopleFactory) -> None:
    admin = await people.add(role=Role.ADMIN)
    refused = await admin.http.post("/v1/admin/release/promote", json={})  # no data: HOLD
    assert refused.status_code == 409
    newest = (await audit(admin, limit=1))[0]
    assert newest["action"] == "rollout.promote_refused"
    assert newest["actor"] == admin.user.name and newest["reason"]


async def test_livechat_assignment_and_status_changes_are_recorded(
    people: PeopleFactory, services: Services
) -> None:
    admin, operator = await people.add(role=Role.ADMIN), await people.add()
    inbox = await make_inbox(admin, operator)
    site = people.client()
    site.headers["Origin"] = "https://shop.example.com"
    opened = await site.post("/api/widget/bootstrap", json={"widget_token": inbox["widget_token"]})
    assert opened.status_code == 200, opened.text
    cid = opened.json()["conversation_id"]
    url = f"/v1/livechat/conversations/{cid}"
    assert (await operator.http.post(f"{url}/assign-me")).status_code == 200
    assert (await operator.http.patch(url, json={"status": "resolved"})).status_code == 200

    status, assign = await audit(admin, target_kind="conversation", target_id=str(cid))
    assert assign["action"] == "livechat.assign" and assign["actor"] == operator.user.name
    assert assign["before"] == {"assignee_id": None}
    assert assign["after"] == {"assignee_id": operator.user.id}
    assert status["action"] == "livechat.update"
    assert status["before"] == {"status": "open"} and status["after"] == {"status": "resolved"}


async def test_only_admins_read_or_export_the_log(people: PeopleFactory) -> None:
    for role in (Role.MEMBER, Role.OPERATOR, Role.MODERATOR, Role.DISPUTE_OPS):
        person = await people.add(role=role)
        for path in ("/v1/admin/audit", "/v1/admin/audit/export"):
            response = await person.http.get(path)
            assert response.status_code == 403, (role, path, response.text)
            assert response.json()["error"]["code"] == "ERR_FORBIDDEN"
    anonymous = await people.client().get("/v1/admin/audit")
    assert anonymous.status_code == 401


async def test_no_api_changes_or_deletes_an_entry(people: PeopleFactory) -> None:
    admin = await people.add(role=Role.ADMIN)
    await admin.http.put("/v1/admin/flags/dispute_tools_v2", json={"enabled": True})
    entry = (await audit(admin))[0]
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        for path in ("/v1/admin/audit", f"/v1/admin/audit/{entry['id']}"):
            response = await admin.http.request(method, path, json={"reason": "x"})
            assert response.status_code in (404, 405), (method, path, response.status_code)
    assert (await audit(admin))[0] == entry


async def test_the_database_refuses_to_update_or_delete_an_entry(
    people: PeopleFactory, services: Services
) -> None:
    admin = await people.add(role=Role.ADMIN)
    await admin.http.put("/v1/admin/flags/dispute_tools_v2", json={"enabled": True})
    before = await audit(admin)
    for statement in (
        "UPDATE audit_log SET actor = 'someone-else'",
        "DELETE FROM audit_log",
    ):
        with pytest.raises(Exception, match="append-only"):
            async with services.db.write() as conn:
                await conn.execute(text(statement))
    assert await audit(admin) == before


async def test_search_filters_by_action_prefix_actor_time_and_pages(
    people: PeopleFactory, services: Services
) -> None:
    admin = await people.add(role=Role.ADMIN)
    for percentage in (10, 20, 30):
        await admin.http.put("/v1/admin/flags/dispute_tools_v2", json={"percentage": percentage})
    await services.audit.record("cli:ops", "inbox.prune_visits", _target("inbox", "*"))

    flags = await audit(admin, action="flag.")
    assert [e["after"]["percentage"] for e in flags] == [30, 20, 10]
    assert [e["action"] for e in await audit(admin, actor="cli:ops")] == ["inbox.prune_visits"]
    assert await audit(admin, action="flag_") == []  # `_` is a character, not a wildcard
    page = (await admin.http.get("/v1/admin/audit", params={"action": "flag.", "limit": 2})).json()
    assert [e["after"]["percentage"] for e in page["entries"]] == [30, 20]
    older = await audit(admin, action="flag.", before_id=page["next_before_id"])
    assert [e["after"]["percentage"] for e in older] == [10]
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert await audit(admin, since=later) == []
    assert len(await audit(admin, until=later)) == 4
    naive = await admin.http.get("/v1/admin/audit", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422 and naive.json()["error"]["code"] == "ERR_VALIDATION"


async def test_export_streams_csv_and_json_lines_and_is_itself_recorded(
    people: PeopleFactory, services: Services
) -> None:
    admin = await people.add(role=Role.ADMIN)
    await services.audit.record(
        "cli:ops",
        "inbox.update",
        _target("inbox", "1"),
        after={"name": "=HYPERLINK(1)"},
        reason="=cmd|' /C calc'!A0",
    )
    as_csv = await admin.http.get("/v1/admin/audit/export", params={"format": "csv"})
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert rows[0]["reason"].startswith("'=")  # a spreadsheet shows it, never runs it
    assert json.loads(rows[0]["after"]) == {"name": "=HYPERLINK(1)"}
    assert rows[-1]["action"] == "audit.export" and rows[-1]["actor"] == admin.user.name

    lines = (await admin.http.get("/v1/admin/audit/export")).text.splitlines()
    assert [json.loads(line)["action"] for line in lines] == [
        "inbox.update",
        "audit.export",
        "audit.export",
    ]


def _target(kind: str, ident: str) -> Any:
    from parley.core.audit import Target

    return Target(kind, ident)


def test_cli_search_tail_and_export(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from parley.cli import app
    from tests.support.cli import wide_consoles

    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("PARLEY_DATABASE_URL", raising=False)
    wide_consoles(monkeypatch)
    runner = CliRunner()
    created = runner.invoke(app, ["inbox", "add", "Shop", "--domain", "shop.example.com"])
    assert created.exit_code == 0, created.output
    flagged = runner.invoke(app, ["release", "flag", "dispute_tools_v2", "--on"])
    assert flagged.exit_code == 0, flagged.output

    table = runner.invoke(app, ["audit", "tail", "-n", "5"])
    assert table.exit_code == 0, table.output
    assert "inbox.create" in table.output and "flag.update" in table.output

    found = runner.invoke(app, ["audit", "search", "--action", "flag.", "--json"])
    entries = [json.loads(line) for line in found.output.splitlines()]
    assert [e["action"] for e in entries] == ["flag.update"]
    assert entries[0]["actor"].startswith("cli:") and entries[0]["source"] == "cli"

    out = tmp_path / "audit.csv"
    exported = runner.invoke(app, ["audit", "export", "--out", str(out), "--format", "csv"])
    assert exported.exit_code == 0, exported.output
    with out.open() as exported_file:
        actions = [row["action"] for row in csv.DictReader(exported_file)]
    assert actions == ["inbox.create", "flag.update", "audit.export"]
    bad = runner.invoke(app, ["audit", "export", "--out", str(out), "--format", "xml"])
    assert bad.exit_code == 2 and "--format is one of" in bad.output


async def test_plain_string_values_survive_the_round_trip(people: PeopleFactory) -> None:
    admin = await people.add(role=Role.ADMIN)
    switched = await admin.http.put("/v1/admin/transport", json={"mode": "sse_only"})
    assert switched.status_code == 200, switched.text
    entry = (await audit(admin, action="transport.set"))[0]
    assert (entry["before"], entry["after"]) == ("auto", "sse_only")
