"""Export packages (docs/privacy.md): a conversation's ZIP and a person's own data, read back
and checked file by file; who may ask, follow and download; progress, restart and expiry —
on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from parley.assembly import Services
from parley.core.exports import ExportStatus
from parley.core.models import Role
from tests.conftest import PeopleFactory, Person, create_conversation
from tests.support.waiting import eventually


async def send(person: Person, cid: int, body: str, attachments: list[str] | None = None) -> dict:
    response = await person.http.post(
        f"/v1/conversations/{cid}/messages",
        json={
            "client_msg_id": f"m-{body[:20]}-{len(body)}",
            "body": body,
            "attachments": attachments or [],
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def upload(person: Person, cid: int, name: str, content: bytes) -> str:
    response = await person.http.post(
        f"/v1/conversations/{cid}/attachments", files={"file": (name, content)}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def finished(person: Person, job: dict[str, Any]) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        found = (await person.http.get(f"/v1/exports/{job['id']}")).json()
        return found if found["status"] in ("done", "failed") else None

    return await eventually(done, timeout=30, what=f"export {job['id']}")


async def download(person: Person, job: dict[str, Any]) -> zipfile.ZipFile:
    response = await person.http.get(f"/v1/exports/{job['id']}/download")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert hashlib.sha256(response.content).hexdigest() == job["sha256"]
    return zipfile.ZipFile(io.BytesIO(response.content))


def read_csv(package: zipfile.ZipFile) -> list[dict[str, str]]:
    text = package.read("messages.csv").decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def check_checksums(package: zipfile.ZipFile) -> dict[str, Any]:
    metadata = json.loads(package.read("metadata.json"))
    names = set(package.namelist()) - {"metadata.json"}
    assert set(metadata["files"]) == names
    for name, described in metadata["files"].items():
        data = package.read(name)
        assert hashlib.sha256(data).hexdigest() == described["sha256"], name
        assert len(data) == described["bytes"]
    return dict(metadata)


async def test_a_member_gets_the_conversation_package_with_every_part(
    people: PeopleFactory,
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob, title="Deal 42")
    picture = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    att = await upload(alice, cid, "../../etc/in voice?.png", picture)
    await send(alice, cid, 'hello, "bob"\nsecond line', [att])
    await send(bob, cid, "=SUM(A1:A9)")
    await send(bob, cid, "päivää ✓")
    await bob.http.post(f"/v1/conversations/{cid}/receipts", json={"read_seq": 2})

    job = await alice.http.post(f"/v1/conversations/{cid}/exports")
    assert job.status_code == 202, job.text
    assert job.json()["status"] == "queued"
    done = await finished(alice, job.json())
    assert done["status"] == "done" and done["done"] == done["total"] == 3
    package = await download(alice, done)

    names = package.namelist()
    assert {"README.md", "messages.csv", "metadata.json"} <= set(names)
    [attached] = [n for n in names if n.startswith("attachments/")]
    assert attached.endswith(f"-{att}-in voice.png") and ".." not in attached
    assert package.read(attached) == picture

    rows = read_csv(package)
    assert [r["seq"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["body"] == 'hello, "bob"\nsecond line' and rows[0]["attachments"] == att
    assert rows[0]["author_name"] == alice.user.name
    assert rows[1]["body"] == "'=SUM(A1:A9)"  # shown by a spreadsheet, never run
    assert rows[2]["body"] == "päivää ✓"
    assert rows[0]["sent_at_utc"].endswith("Z")

    metadata = check_checksums(package)
    assert metadata["conversation"]["title"] == "Deal 42"
    assert metadata["requested_by"] == {"id": alice.user.id, "name": alice.user.name}
    receipts = {m["name"]: m["read_seq"] for m in metadata["members"]}
    assert receipts[bob.user.name] == 2
    assert metadata["files"][attached]["original_name"] == "in voice.png"
    assert metadata["counts"] == {"messages": 3, "deleted_messages": 0, "attachments": 1}
    readme = package.read("README.md").decode()
    assert "Deal 42" in readme and alice.user.name in readme and "sha256sum" in readme


async def test_strangers_cannot_export_follow_or_download(people: PeopleFactory) -> None:
    alice, bob, eve = await people.add(), await people.add(), await people.add()
    admin = await people.add(role=Role.ADMIN)
    cid = await create_conversation(alice, bob)
    await send(alice, cid, "private")

    refused = await eve.http.post(f"/v1/conversations/{cid}/exports")
    missing = await eve.http.post("/v1/conversations/999999/exports")
    assert refused.status_code == missing.status_code == 404
    assert refused.json() == missing.json()

    job = (await alice.http.post(f"/v1/conversations/{cid}/exports")).json()
    await finished(alice, job)
    for other in (eve, bob):  # even another member: the job is alice's
        assert (await other.http.get(f"/v1/exports/{job['id']}")).status_code == 404
        assert (await other.http.get(f"/v1/exports/{job['id']}/download")).status_code == 404
    assert (await admin.http.get(f"/v1/exports/{job['id']}/download")).status_code == 200
    admin_job = await admin.http.post(f"/v1/conversations/{cid}/exports")
    assert admin_job.status_code == 202  # admins export any conversation
    anonymous = await people.client().get(f"/v1/exports/{job['id']}")
    assert anonymous.status_code == 401


async def test_requests_and_downloads_are_in_the_audit_log(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    admin = await people.add(role=Role.ADMIN)
    cid = await create_conversation(alice, bob)
    job = (await alice.http.post(f"/v1/conversations/{cid}/exports")).json()
    await download(alice, await finished(alice, job))

    entries = (await admin.http.get("/v1/admin/audit", params={"action": "export."})).json()
    download_entry, request_entry = entries["entries"]
    assert request_entry["action"] == "export.request"
    assert request_entry["target_id"] == str(cid) and request_entry["actor"] == alice.user.name
    assert download_entry["action"] == "export.download"
    assert download_entry["target_id"] == job["id"]


async def test_a_package_not_ready_answers_409_and_an_expired_one_404(
    people: PeopleFactory, services: Services
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    now = datetime.now(UTC)
    running = await services.exports.store.add_job(
        {
            "id": "exp_running0000000000",
            "kind": "conversation",
            "subject_id": cid,
            "requested_by": alice.user.id,
            "requested_by_name": alice.user.name,
            "status": "running",
            "heartbeat_at": now,
            "params": {},
            "created_at": now,
        }
    )
    early = await alice.http.get(f"/v1/exports/{running.id}/download")
    assert early.status_code == 409 and early.json()["error"]["code"] == "ERR_EXPORT_NOT_READY"

    job = await finished(alice, (await alice.http.post(f"/v1/conversations/{cid}/exports")).json())
    await services.exports.store.update_job(job["id"], {"expires_at": now - timedelta(hours=1)})
    assert await services.exports.delete_expired() == 1
    assert (await alice.http.get(f"/v1/exports/{job['id']}/download")).status_code == 404


async def test_a_job_whose_runner_died_is_taken_over_and_finished(
    people: PeopleFactory, services: Services
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    await send(alice, cid, "survives a crash")
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    orphan = await services.exports.store.add_job(
        {
            "id": "exp_orphan00000000000",
            "kind": "conversation",
            "subject_id": cid,
            "requested_by": alice.user.id,
            "requested_by_name": alice.user.name,
            "status": "running",
            "runner": "a-dead-node",
            "heartbeat_at": long_ago,
            "params": {},
            "created_at": long_ago,
        }
    )
    services.exports._wake.set()
    done = await finished(alice, {"id": orphan.id})
    assert done["status"] == ExportStatus.DONE.value
    package = await download(alice, done)
    assert [r["body"] for r in read_csv(package)] == ["survives a crash"]


async def test_my_export_holds_only_my_data_across_conversations(people: PeopleFactory) -> None:
    alice, bob, carol = await people.add(), await people.add(), await people.add()
    first = await create_conversation(alice, bob, title="with bob")
    second = await create_conversation(alice, carol, title="with carol")
    att = await upload(alice, second, "notes.txt", b"alice's notes")
    await send(alice, first, "mine one")
    await send(bob, first, "bob's words")
    await send(alice, second, "mine two", [att])
    await upload(carol, second, "carol.txt", b"carol's file")

    await alice.http.patch("/v1/notifications/preferences", json={"email": "alice.me@example.net"})
    started = await alice.http.get("/v1/me/export")
    assert started.status_code == 202 and started.headers["retry-after"]

    async def ready() -> httpx.Response | None:
        response = await alice.http.get("/v1/me/export")
        return response if response.status_code == 200 else None

    response = await eventually(ready, timeout=30, what="alice's export")
    package = zipfile.ZipFile(io.BytesIO(response.content))
    rows = read_csv(package)
    assert sorted(r["body"] for r in rows) == ["mine one", "mine two"]
    assert {r["conversation_title"] for r in rows} == {"with bob", "with carol"}
    files = [n for n in package.namelist() if n.startswith("attachments/")]
    assert len(files) == 1 and package.read(files[0]) == b"alice's notes"
    metadata = check_checksums(package)
    assert metadata["kind"] == "person"
    assert metadata["profile"]["name"] == alice.user.name
    assert {c["title"] for c in metadata["conversations"]} == {"with bob", "with carol"}
    assert metadata["api_tokens"] and "token_hash" not in json.dumps(metadata)
    assert metadata["notification_preferences"]["email"] == "alice.me@example.net"
    everything = b"".join(package.read(n) for n in package.namelist())
    assert b"bob's words" not in everything and b"carol's file" not in everything


async def test_only_admins_export_someone_else_and_must_say_why(people: PeopleFactory) -> None:
    admin, member, subject = (
        await people.add(role=Role.ADMIN),
        await people.add(),
        await people.add(),
    )
    url = f"/v1/admin/users/{subject.user.id}/export"
    assert (await member.http.post(url, json={"reason": "curious"})).status_code == 403
    for operator_role in (Role.OPERATOR, Role.MODERATOR):
        staff = await people.add(role=operator_role)
        assert (await staff.http.post(url, json={"reason": "x"})).status_code == 403
    assert (await admin.http.post(url, json={})).status_code == 422
    assert (
        await admin.http.post("/v1/admin/users/999999/export", json={"reason": "r"})
    ).status_code == 404
    job = await admin.http.post(url, json={"reason": "DSAR ticket #17"})
    assert job.status_code == 202 and job.json()["kind"] == "person"
    done = await finished(admin, job.json())
    package = await download(admin, done)
    assert json.loads(package.read("metadata.json"))["parameters"] == {"reason": "DSAR ticket #17"}
    entries = (await admin.http.get("/v1/admin/audit", params={"action": "privacy."})).json()
    assert entries["entries"][-1]["reason"] == "DSAR ticket #17"


def test_cli_exports_a_conversation_with_progress_and_json(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from parley.cli import app
    from parley.runner import run_with_services
    from tests.support.cli import wide_consoles

    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("PARLEY_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    wide_consoles(monkeypatch)

    async def seed(services: Services) -> int:
        await services.start()  # sends need the writer and the stream running
        try:
            return await seed_conversation(services)
        finally:
            await services.stop()

    async def seed_conversation(services: Services) -> int:
        alice = await services.identity.do_create_user("alice")
        bob = await services.identity.do_create_user("bob")
        conversation, _ = await services.timeline.do_create_conversation(
            alice,
            kind=__import__("parley.core.models").core.models.ConversationKind.GROUP,
            title="cli",
            member_names=[bob.name],
        )
        for i in range(5):
            await services.timeline.do_send(
                alice,
                conversation.id,
                client_msg_id=f"c{i}",
                body=f"line {i}",
                attachment_ids=[],
                metadata={},
            )
        return conversation.id

    cid = run_with_services(seed)
    runner = CliRunner()
    out = tmp_path / "conv.zip"
    result = runner.invoke(app, ["export", "conversation", str(cid), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert (
        summary["messages"] == 5
        and summary["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    )
    rows = read_csv(zipfile.ZipFile(out))
    assert [r["body"] for r in rows] == [f"line {i}" for i in range(5)]
    missing = runner.invoke(app, ["export", "conversation", "999"])
    assert missing.exit_code == 1 and "ERR_NOT_FOUND" in missing.output
