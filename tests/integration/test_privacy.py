"""Privacy (docs/privacy.md): erasure leaves no trace of the person in the database dump or the
file store while everyone else's timeline keeps every seq; legal holds; the retention job; the
privacy page — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from parley.assembly import Services
from parley.core.models import Role
from parley.settings import Settings
from tests.conftest import PeopleFactory, Person, create_conversation

SITE = "https://shop.example.com"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        log_json=False,
        sqlite_synchronous="NORMAL",
        widget_poll_min_interval_seconds=0,
        retention_days={"group": 30, "livechat": 60},
        retention_every_hours=0,
        privacy_controller="<b>ACME</b> Marketplace",
        privacy_contact="privacy@acme.example",
    )


def database_dump(url: str) -> str:
    """Everything the database holds, as text (SQL dump)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        with sqlite3.connect(path) as conn:
            return "\n".join(conn.iterdump())
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    done = subprocess.run(
        ["pg_dump", "--no-owner", "--dbname", dsn], capture_output=True, text=True, check=True
    )
    return done.stdout


def stored_files(settings: Settings) -> bytes:
    return b"".join(
        p.read_bytes()
        for p in settings.data_dir.rglob("*")
        if p.is_file() and p.suffix != ".db" and "parley.db" not in p.name
    )


async def send(person: Person, cid: int, body: str, attachments: list[str] | None = None) -> dict:
    response = await person.http.post(
        f"/v1/conversations/{cid}/messages",
        json={"client_msg_id": body, "body": body, "attachments": attachments or []},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def upload(person: Person, cid: int, content: bytes) -> str:
    response = await person.http.post(
        f"/v1/conversations/{cid}/attachments", files={"file": ("secret-plan.txt", content)}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def timeline(person: Person, cid: int) -> list[dict[str, Any]]:
    response = await person.http.get(f"/v1/conversations/{cid}/messages", params={"after": 0})
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


async def test_erasure_leaves_no_trace_and_others_keep_a_gapless_timeline(
    people: PeopleFactory, services: Services, settings: Settings
) -> None:
    admin = await people.add(role=Role.ADMIN)
    zelda = await people.add("zelda.quartermaine")
    bob = await people.add()
    cid = await create_conversation(zelda, bob)
    prefs = await zelda.http.patch(
        "/v1/notifications/preferences", json={"email": "zelda.q@example.net"}
    )
    assert prefs.status_code == 200, prefs.text
    att = await upload(zelda, cid, b"ZQ-ATTACHMENT-CONTENT")
    await send(zelda, cid, "ZQ-MARKER-one", [att])
    await send(bob, cid, "bob stays")
    await send(zelda, cid, "ZQ-MARKER-two")
    await zelda.http.patch(f"/v1/conversations/{cid}/messages/3", json={"body": "ZQ-MARKER-edited"})

    erased = await admin.http.post(
        f"/v1/admin/users/{zelda.user.id}/erase",
        json={"policy": "tombstone", "reason": "e-mail request 2026-12-07"},
    )
    assert erased.status_code == 200, erased.text
    assert erased.json()["messages_tombstoned"] == 2 and erased.json()["attachments_deleted"] == 1

    seen = await timeline(bob, cid)
    assert [m["seq"] for m in seen] == [1, 2, 3]
    assert [m["body"] for m in seen] == ["", "bob stays", ""]
    assert seen[0]["deleted_at"] and seen[0]["attachments"] == []
    assert (await zelda.http.get("/v1/conversations")).status_code == 401  # tokens are gone

    dump = database_dump(settings.effective_database_url)
    for trace in ("zelda.quartermaine", "zelda.q@example.net", "ZQ-MARKER", "secret-plan"):
        assert trace not in dump, trace
    assert b"ZQ-ATTACHMENT-CONTENT" not in stored_files(settings)
    entry = (await admin.http.get("/v1/admin/audit", params={"action": "privacy.erase"})).json()
    assert entry["entries"][0]["target_id"] == str(zelda.user.id)
    assert entry["entries"][0]["reason"] == "e-mail request 2026-12-07"


async def test_erasing_a_visitor_removes_what_the_site_told_about_them(
    people: PeopleFactory, services: Services, settings: Settings
) -> None:
    admin, operator = await people.add(role=Role.ADMIN), await people.add()
    inbox = (
        await admin.http.post(
            "/v1/admin/inboxes",
            json={
                "name": "Shop",
                "allowed_domains": ["shop.example.com"],
                "operators": [operator.user.name],
            },
        )
    ).json()
    site = people.client()
    site.headers["Origin"] = SITE
    opened = (
        await site.post(
            "/api/widget/bootstrap",
            json={
                "widget_token": inbox["widget_token"],
                "page_url": f"{SITE}/orders/ZQ-ORDER-77",
                "attributes": {"name": "Zed Visitorsson", "email": "zed.v@example.org"},
            },
        )
    ).json()
    sent = await site.post(
        "/api/widget/messages",
        json={"session": opened["session"], "client_msg_id": "v1", "body": "my phone is 555-0199"},
    )
    assert sent.status_code == 201, sent.text

    erased = await admin.http.post(
        f"/v1/admin/users/{opened['visitor_id']}/erase",
        json={"policy": "tombstone", "reason": "visitor asked by e-mail"},
    )
    assert erased.status_code == 200, erased.text
    assert erased.json()["widget_sessions_ended"] == 1
    dump = database_dump(settings.effective_database_url)
    for trace in (
        "zed.v@example.org",
        "Zed Visitorsson",
        "ZQ-ORDER-77",
        "555-0199",
        opened["visitor_name"],
    ):
        assert trace not in dump, trace
    again = await site.post(
        "/api/widget/bootstrap",
        json={"widget_token": inbox["widget_token"], "session": opened["session"]},
    )
    assert again.json()["restored"] is False  # the old session is gone


async def test_anonymize_keeps_the_text_for_others_but_not_who_wrote_it(
    people: PeopleFactory, settings: Settings
) -> None:
    admin, ann, bob = (
        await people.add(role=Role.ADMIN),
        await people.add("ann.example"),
        await people.add(),
    )
    cid = await create_conversation(ann, bob)
    att = await upload(ann, cid, b"ANN-FILE")
    await send(ann, cid, "the deal is fine", [att])

    erased = await admin.http.post(
        f"/v1/admin/users/{ann.user.id}/erase", json={"policy": "anonymize", "reason": "r"}
    )
    assert erased.status_code == 200, erased.text
    [message] = await timeline(bob, cid)
    assert message["body"] == "the deal is fine" and message["attachments"] == []
    members = (await bob.http.get(f"/v1/conversations/{cid}/members")).json()["members"]
    names = {m["display_name"] for m in members}
    assert "Deleted user" in names
    dump = database_dump(settings.effective_database_url)
    assert "ann.example" not in dump
    assert b"ANN-FILE" not in stored_files(settings)


async def test_only_admins_erase_and_never_themselves(people: PeopleFactory) -> None:
    admin, target = await people.add(role=Role.ADMIN), await people.add()
    for role in (Role.MEMBER, Role.OPERATOR, Role.MODERATOR, Role.DISPUTE_OPS):
        other = await people.add(role=role)
        response = await other.http.post(
            f"/v1/admin/users/{target.user.id}/erase", json={"policy": "tombstone", "reason": "x"}
        )
        assert response.status_code == 403, role
    self_erase = await admin.http.post(
        f"/v1/admin/users/{admin.user.id}/erase", json={"policy": "tombstone", "reason": "x"}
    )
    assert self_erase.status_code == 409
    bad = await admin.http.post(
        f"/v1/admin/users/{target.user.id}/erase", json={"policy": "shred", "reason": "x"}
    )
    assert bad.status_code == 422
    assert (await target.http.get("/v1/conversations")).status_code == 200  # untouched


async def backdate(services: Services, cid: int, days: int, seqs: list[int]) -> None:
    moment = datetime.now(UTC) - timedelta(days=days)
    async with services.db.write() as conn:
        await conn.execute(
            text(
                "UPDATE messages SET created_at = :moment "
                "WHERE conversation_id = :cid AND seq IN ("
                + ",".join(str(int(s)) for s in seqs)
                + ")"
            ),
            {"moment": moment, "cid": cid},
        )


async def test_retention_purges_old_messages_except_under_legal_hold(
    people: PeopleFactory, services: Services
) -> None:
    admin, alice, bob = await people.add(role=Role.ADMIN), await people.add(), await people.add()
    officer = await people.add(role=Role.DISPUTE_OPS)
    kept = await create_conversation(alice, bob, title="dispute evidence")
    purged = await create_conversation(alice, bob, title="old chatter")
    room = await create_conversation(alice, bob, kind="room", title="rooms keep forever")
    for cid in (kept, purged, room):
        await send(alice, cid, f"old in {cid}")
        await send(bob, cid, f"new in {cid}")
        await backdate(services, cid, 45, [1])

    hold = await officer.http.post(
        "/v1/admin/legal-holds", json={"conversation_id": kept, "reason": "dispute #9"}
    )
    assert hold.status_code == 201, hold.text
    member_hold = await alice.http.post(
        "/v1/admin/legal-holds", json={"conversation_id": purged, "reason": "mine"}
    )
    assert member_hold.status_code == 403

    dry = await admin.http.post("/v1/admin/retention/run", json={"dry_run": True})
    assert dry.json() == {
        "dry_run": True,
        "purged": 1,
        "conversations": 1,
        "held_conversations": [kept],
    }
    assert (await timeline(bob, purged))[0]["body"] == f"old in {purged}"

    run = await admin.http.post("/v1/admin/retention/run", json={})
    assert run.json()["purged"] == 1 and run.json()["held_conversations"] == [kept]
    old, new = await timeline(bob, purged)
    assert (old["seq"], old["body"], new["seq"], new["body"]) == (1, "", 2, f"new in {purged}")
    assert old["deleted_at"] is not None
    assert [m["body"] for m in await timeline(bob, kept)] == [f"old in {kept}", f"new in {kept}"]
    assert [m["body"] for m in await timeline(bob, room)] == [f"old in {room}", f"new in {room}"]

    released = await officer.http.post(
        f"/v1/admin/legal-holds/{hold.json()['id']}/release", json={"reason": "dispute settled"}
    )
    assert released.status_code == 200 and released.json()["released_by"] == officer.user.name
    again = await admin.http.post("/v1/admin/retention/run", json={})
    assert again.json()["purged"] == 1
    assert (await timeline(bob, kept))[0]["body"] == ""
    assert (await alice.http.post("/v1/admin/retention/run", json={})).status_code == 403
    actions = [
        e["action"]
        for e in (await admin.http.get("/v1/admin/audit", params={"action": "privacy."})).json()[
            "entries"
        ]
    ]
    assert actions.count("privacy.retention_run") == 2 and "privacy.hold_release" in actions


async def test_a_legal_hold_stops_erasure_until_released(people: PeopleFactory) -> None:
    admin, alice, bob = await people.add(role=Role.ADMIN), await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    await send(alice, cid, "evidence")
    hold = (
        await admin.http.post(
            "/v1/admin/legal-holds", json={"conversation_id": cid, "reason": "court order"}
        )
    ).json()
    refused = await admin.http.post(
        f"/v1/admin/users/{alice.user.id}/erase", json={"policy": "tombstone", "reason": "r"}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "ERR_LEGAL_HOLD"
    assert (await timeline(bob, cid))[0]["body"] == "evidence"
    await admin.http.post(f"/v1/admin/legal-holds/{hold['id']}/release", json={"reason": "done"})
    allowed = await admin.http.post(
        f"/v1/admin/users/{alice.user.id}/erase", json={"policy": "tombstone", "reason": "r"}
    )
    assert allowed.status_code == 200


async def test_the_privacy_page_says_who_what_and_how_long_and_the_widget_links_it(
    people: PeopleFactory,
) -> None:
    page = await people.client().get("/privacy")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "&lt;b&gt;ACME&lt;/b&gt; Marketplace" in page.text and "<b>ACME" not in page.text
    assert "privacy@acme.example" in page.text
    assert "deleted after 30 days" in page.text and "deleted after 60 days" in page.text
    assert "script" not in page.text.lower()
    assert "default-src 'none'" in page.headers["content-security-policy"]

    admin = await people.add(role=Role.ADMIN)
    inbox = (
        await admin.http.post(
            "/v1/admin/inboxes", json={"name": "Shop", "allowed_domains": ["shop.example.com"]}
        )
    ).json()
    site = people.client()
    site.headers["Origin"] = SITE
    opened = await site.post("/api/widget/bootstrap", json={"widget_token": inbox["widget_token"]})
    assert opened.json()["privacy"]["url"] == "http://parley.test/privacy"
    own = await admin.http.patch(
        f"/v1/admin/inboxes/{inbox['id']}",
        json={"privacy_url": "https://shop.example.com/privacy", "retention_days": 14},
    )
    assert own.status_code == 200 and own.json()["retention_days"] == 14
    again = await site.post("/api/widget/bootstrap", json={"widget_token": inbox["widget_token"]})
    assert again.json()["privacy"]["url"] == "https://shop.example.com/privacy"


def test_cli_holds_retention_export_and_erase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from parley.cli import app
    from parley.runner import run_with_services
    from tests.support.cli import wide_consoles

    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PARLEY_RETENTION_DAYS", '{"group": 30}')
    monkeypatch.delenv("PARLEY_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    wide_consoles(monkeypatch)

    async def seed(services: Services) -> int:
        await services.start()
        try:
            from parley.core.models import ConversationKind

            alice = await services.identity.do_create_user("alice")
            bob = await services.identity.do_create_user("bob")
            conversation, _ = await services.timeline.do_create_conversation(
                alice, kind=ConversationKind.GROUP, title="cli", member_names=["bob"]
            )
            for body, who in (("old words", alice), ("recent", bob)):
                await services.timeline.do_send(
                    who,
                    conversation.id,
                    client_msg_id=body,
                    body=body,
                    attachment_ids=[],
                    metadata={},
                )
            await backdate(services, conversation.id, 40, [1])
            return conversation.id
        finally:
            await services.stop()

    cid = run_with_services(seed)
    runner = CliRunner()

    def ok(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    assert "Hold 1 on conversation" in ok("privacy", "hold", "add", str(cid), "--reason", "audit")
    assert "audit" in ok("privacy", "hold", "list")
    held = json.loads(ok("privacy", "retention", "--dry-run", "--json"))
    assert held["purged"] == 0 and held["held"] == [cid]
    ok("privacy", "hold", "release", "1", "--reason", "over")
    assert json.loads(ok("privacy", "retention", "--json"))["purged"] == 1

    exported = json.loads(
        ok("privacy", "export", "bob", "--reason", "mail #5", "--out", "bob.zip", "--json")
    )
    assert exported["messages"] == 1 and (tmp_path / "bob.zip").exists()
    refused = runner.invoke(app, ["privacy", "erase", "bob", "--reason", "x"], input="n\n")
    assert refused.exit_code == 1  # not confirmed: nothing happens
    erased = json.loads(ok("privacy", "erase", "bob", "--reason", "mail #6", "--yes", "--json"))
    assert erased["messages"] == 1 and erased["policy"] == "tombstone"
    missing = runner.invoke(app, ["privacy", "erase", "nobody", "--reason", "x", "--yes"])
    assert missing.exit_code == 1 and "ERR_NOT_FOUND" in missing.output
