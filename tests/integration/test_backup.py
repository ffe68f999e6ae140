"""Backups and verified restores (docs/operations.md), on SQLite and PostgreSQL: a restore holds
the same data as the deployment (as its API shows it), a damaged backup is refused before
anything is touched, a restore that differs from its backup says so, a restore in place keeps
what it replaces, and an anonymized staging copy keeps shapes while personal data is gone."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from parley.app import create_app
from parley.core.models import Role
from parley.features.ops.anonymize import create_anonymized_backup
from parley.features.ops.backup import (
    BackupError,
    create_backup,
    newest_staging_dump_age,
    newest_verified_backup_age,
    verify_backup,
)
from parley.features.ops.restore import restore_in_place, restore_test, restore_to
from parley.settings import Settings
from parley.storage import snapshots
from tests.conftest import RUN_ID, PeopleFactory, Person, create_conversation
from tests.support.accounts import issue_token

SITE = "https://shop.example.com"
ATTACHMENT = b"%PDF-1.4 contract signed by Ann Smith, ann.smith@example.com\n" * 20
PERSONAL = ["ann.smith@example.com", "Ann Smith", "bob@example.org", "contract signed"]


# -- a deployment with something in it -------------------------------------------------------------


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """The suite's settings, but notifications are sent by `parley worker` processes only: these
    tests compare one state twice, and the in-process worker would drain the outbox between."""
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        log_json=False,
        sqlite_synchronous="NORMAL",
        notify_worker="external",
    )


async def populate(people: PeopleFactory) -> dict[str, Any]:
    """Staff, members, a conversation with messages and a file, an inbox with a visitor."""
    admin = await people.add("annsmith", role=Role.ADMIN)
    bob = await people.add()
    cid = await create_conversation(admin, bob, title="Contract with Ann Smith")
    upload = await admin.http.post(
        f"/v1/conversations/{cid}/attachments",
        files={"file": ("contract-ann-smith.pdf", ATTACHMENT, "application/pdf")},
    )
    assert upload.status_code == 201, upload.text
    for index, body in enumerate(
        ["Hi Bob, mail me at ann.smith@example.com", "Sure: bob@example.org", "Signed!"]
    ):
        author = admin if index % 2 == 0 else bob
        extra = {"attachments": [upload.json()["id"]]} if index == 2 else {}
        sent = await author.http.post(
            f"/v1/conversations/{cid}/messages",
            json={"client_msg_id": f"m{index}", "body": body, **extra},
        )
        assert sent.status_code == 201, sent.text
    inbox = await admin.http.post(
        "/v1/admin/inboxes",
        json={"name": "Shop", "allowed_domains": ["shop.example.com"], "operators": ["annsmith"]},
    )
    assert inbox.status_code == 201, inbox.text
    visitor = people.client()
    visitor.headers["Origin"] = SITE
    visit = await visitor.post(
        "/api/widget/bootstrap",
        json={
            "widget_token": inbox.json()["widget_token"],
            "page_url": f"{SITE}/orders/ann.smith@example.com",
            "attributes": {"name": "Ann Smith", "email": "ann.smith@example.com"},
        },
    )
    assert visit.status_code == 200, visit.text
    return {"admin": admin, "bob": bob, "cid": cid, "attachment": upload.json()["id"]}


async def what_the_api_shows(client: httpx.AsyncClient, cid: int, attachment: str) -> Any:
    """What an admin sees of the deployment: the conversation, its messages, the file, the log."""
    parts = {
        "conversation": await client.get(f"/v1/conversations/{cid}"),
        "messages": await client.get(f"/v1/conversations/{cid}/messages"),
        "members": await client.get(f"/v1/conversations/{cid}/members"),
        "audit": await client.get("/v1/admin/audit"),
        "inboxes": await client.get("/v1/admin/inboxes"),
    }
    for name, response in parts.items():
        assert response.status_code == 200, (name, response.text)
    shown: dict[str, Any] = {name: response.json() for name, response in parts.items()}
    shown["file"] = (await client.get(f"/v1/attachments/{attachment}")).content
    return shown


@asynccontextmanager
async def deployment(settings: Settings, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """A Parley app on `settings`, and a client signed in with `token`."""
    application = create_app(settings)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application),
            base_url="http://restored.test",
            headers={"Authorization": f"Bearer {token}"},
        ) as client,
    ):
        yield client


async def new_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL naming a database that does not exist yet (the restore creates it)."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / f'restored-{uuid.uuid4().hex[:6]}.db'}"
    databases = request.getfixturevalue("postgres_databases")
    name = f"parley_t_{RUN_ID}_r{uuid.uuid4().hex[:8]}"
    databases.created.append(name)  # dropped with the others at the end of the run
    return str(await databases.fresh()).rsplit("/", 1)[0] + f"/{name}"


async def everything_stored(url: str) -> str:
    """Every value of every row of every table, as one text (to look for personal data)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
            rows = []
            for table in tables:
                result = await conn.execute(text(f'SELECT * FROM "{table}"'))
                rows += [json.dumps(list(row), default=str) for row in result]
    finally:
        await engine.dispose()
    return "\n".join(rows)


# -- backup → restore ------------------------------------------------------------------------------


async def test_a_restore_into_a_new_database_shows_exactly_what_the_deployment_shows(
    people: PeopleFactory,
    settings: Settings,
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    world = await populate(people)
    admin: Person = world["admin"]
    before = await what_the_api_shows(admin.http, world["cid"], world["attachment"])

    backup = await create_backup(settings, label="drill")
    target = await new_database(backend, request, tmp_path)
    report = await restore_to(backup, target, attachments_dir=tmp_path / "restored" / "files")

    assert backup.verified and backup.manifest is not None
    assert backup.manifest.tables["messages"].rows == 3
    assert report.ok, report.problems
    assert {t.table for t in report.tables} >= {"messages", "users", "audit_log", "attachments"}
    assert all(t.ok and t.rows == t.expected_rows for t in report.tables)
    assert report.attachments == 1
    restored = settings.model_copy(
        update={"database_url": target, "data_dir": tmp_path / "restored"}
    )
    restored_files = tmp_path / "restored" / "attachments"
    (tmp_path / "restored" / "files").rename(restored_files)
    async with deployment(restored, admin.token) as client:
        after = await what_the_api_shows(client, world["cid"], world["attachment"])
        still_append_only = await client.get("/v1/admin/audit")
    assert after == before
    assert after["file"] == ATTACHMENT
    assert still_append_only.status_code == 200
    with pytest.raises(Exception, match="append-only"):
        engine = create_async_engine(target)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM audit_log"))
        finally:
            await engine.dispose()


async def test_a_damaged_backup_fails_verification_and_its_restore_touches_nothing(
    people: PeopleFactory,
    settings: Settings,
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    await populate(people)
    backup = await create_backup(settings)
    assert backup.manifest is not None
    database_file = backup.path / backup.manifest.database_file
    damaged = bytearray(database_file.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    database_file.write_bytes(bytes(damaged))
    next(p for p in (backup.path / "attachments").rglob("*") if p.is_file()).write_bytes(b"x")
    target = await new_database(backend, request, tmp_path)

    checked = await verify_backup(backup.path)
    with pytest.raises(BackupError) as refused:
        await restore_to(backup, target, attachments_dir=tmp_path / "files")

    assert not checked.verified and checked.verification is not None
    problems = " | ".join(checked.verification.problems)
    assert f"{backup.manifest.database_file}: checksum differs" in problems
    assert "attachments/" in problems and "bytes, manifest says" in problems
    assert refused.value.code == "ERR_BACKUP_CORRUPT"
    assert "damaged or incomplete" in refused.value.message
    if backend == "sqlite":
        assert not snapshots.sqlite_path(target).exists()
    else:
        assert not await snapshots.pg_database_exists(target)
    assert not (tmp_path / "files").exists()


async def test_a_backup_without_a_readable_manifest_is_refused(
    people: PeopleFactory, settings: Settings, tmp_path: Path
) -> None:
    await populate(people)
    backup = await create_backup(settings)
    (backup.path / "manifest.json").write_text('{"format": 1, "name": ')

    with pytest.raises(BackupError) as refused:
        await restore_to(
            backup, f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", attachments_dir=tmp_path
        )

    assert refused.value.code == "ERR_BACKUP_CORRUPT"
    assert "manifest.json is unreadable" in refused.value.message


@pytest.mark.parametrize("backend", ["sqlite"])  # edits the SQLite file of a backup
async def test_a_restore_whose_content_differs_from_the_backup_is_reported_table_by_table(
    people: PeopleFactory, settings: Settings, tmp_path: Path
) -> None:
    """Content changed inside a well-formed database file (and its manifest entry made to
    match): the file checks pass, the row checksums after the restore do not."""
    await populate(people)
    backup = await create_backup(settings)
    assert backup.manifest is not None
    database_file = backup.path / "database.sqlite"
    with sqlite3.connect(database_file) as conn:
        conn.execute("UPDATE messages SET body = 'changed' WHERE seq = 1")
    manifest = json.loads((backup.path / "manifest.json").read_text())
    manifest["files"]["database.sqlite"] = {
        "size": database_file.stat().st_size,
        "sha256": snapshots_sha256(database_file),
    }
    (backup.path / "manifest.json").write_text(json.dumps(manifest))

    report = await restore_to(
        backup, f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", attachments_dir=tmp_path / "f"
    )

    assert not report.ok
    assert report.problems == ["messages: same 3 rows but different content (checksum)"]
    assert [t.table for t in report.tables if not t.ok] == ["messages"]


def snapshots_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_restore_refuses_a_database_that_already_holds_data(
    people: PeopleFactory, settings: Settings, tmp_path: Path
) -> None:
    await populate(people)
    backup = await create_backup(settings)

    with pytest.raises(BackupError) as refused:
        await restore_to(backup, settings.effective_database_url, attachments_dir=tmp_path)

    assert refused.value.code == "ERR_RESTORE_TARGET_NOT_EMPTY"


async def test_restoring_in_place_puts_the_backup_back_and_keeps_what_was_there(
    people: PeopleFactory,
    settings: Settings,
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """A rollback: the deployment (here a copy, its server stopped) goes back to the backup."""
    world = await populate(people)
    admin: Person = world["admin"]
    backup = await create_backup(settings, label="pre-deploy")
    live = settings.model_copy(
        update={
            "database_url": await new_database(backend, request, tmp_path),
            "data_dir": tmp_path / "live",
            "backup_dir": settings.effective_backup_dir,
        }
    )
    await restore_to(backup, live.effective_database_url, attachments_dir=live.attachments_dir)
    async with deployment(live, admin.token) as client:
        before = await what_the_api_shows(client, world["cid"], world["attachment"])
        sent = await client.post(
            f"/v1/conversations/{world['cid']}/messages",
            json={"client_msg_id": "after-deploy", "body": "written by the bad release"},
        )
        assert sent.status_code == 201

    report = await restore_in_place(live, backup)

    assert report.ok, report.problems
    assert report.safety_backup.endswith("-before-restore")
    async with deployment(live, admin.token) as client:
        after = await what_the_api_shows(client, world["cid"], world["attachment"])
    assert after == before
    safety = live.effective_backup_dir / report.safety_backup
    saved = json.loads((safety / "manifest.json").read_text())
    assert saved["tables"]["messages"]["rows"] == 4  # the rolled-back write is kept there


async def test_restore_test_restores_the_newest_backup_into_scratch_and_records_it(
    people: PeopleFactory, settings: Settings, backend: str
) -> None:
    await populate(people)
    await create_backup(settings, label="older")
    newest = await create_backup(settings, label="scheduled")

    report = await restore_test(settings)

    assert report.ok and report.backup == newest.name
    log = (settings.effective_backup_dir / "restore-tests.jsonl").read_text().splitlines()
    record = json.loads(log[-1])
    assert record["ok"] is True and record["backup"] == newest.name
    if backend == "postgres":  # the scratch database is gone again
        assert not await snapshots.pg_database_exists(
            report.target.replace("***", "")  # no password in the URL anyway
        )
    else:
        assert not snapshots.sqlite_path(report.target).exists()


async def test_backup_freshness_counts_only_verified_backups(
    people: PeopleFactory, settings: Settings
) -> None:
    root = settings.effective_backup_dir
    assert newest_verified_backup_age(root) is None

    await create_backup(settings)
    age = newest_verified_backup_age(root)
    second = await create_backup(settings, label="later")
    assert second.manifest is not None
    (second.path / second.manifest.database_file).write_bytes(b"damaged")
    await verify_backup(second.path)
    found = newest_verified_backup_age(root)

    assert age is not None and age.total_seconds() < 60
    assert newest_staging_dump_age(root) is None
    assert found is not None and found > age  # the damaged newer one does not count


# -- anonymized staging copies ---------------------------------------------------------------------


async def test_an_anonymized_copy_keeps_shapes_counts_and_times_but_no_personal_data(
    people: PeopleFactory,
    settings: Settings,
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    world = await populate(people)
    admin: Person = world["admin"]
    original = await what_the_api_shows(admin.http, world["cid"], world["attachment"])
    plain = await create_backup(settings)

    made = await create_anonymized_backup(settings)
    staging = await new_database(backend, request, tmp_path)
    report = await restore_to(made.backup, staging, attachments_dir=tmp_path / "s" / "attachments")

    manifest = made.backup.manifest
    assert manifest is not None and plain.manifest is not None
    assert manifest.anonymized and made.backup.name.startswith("parley-anon-")
    assert report.ok, report.problems
    counts = {name: t.rows for name, t in manifest.tables.items()}
    assert counts == {name: t.rows for name, t in plain.manifest.tables.items()}
    stored = await everything_stored(staging)
    files = b"".join(p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file())
    for secret in PERSONAL:
        assert secret not in stored, secret
        assert secret.encode() not in files, secret
    assert "annsmith" not in stored
    assert newest_staging_dump_age(settings.effective_backup_dir) is not None

    # Staging signs in with its own credentials: production passwords and tokens are gone.
    staging_settings = settings.model_copy(
        update={"database_url": staging, "data_dir": tmp_path / "s"}
    )
    async with deployment(staging_settings, admin.token) as client:
        assert (await client.get("/v1/me")).status_code == 401
    # What `parley user token user-<id>` does on staging.
    token = issue_token(staging_settings, f"user-{admin.user.id}")
    async with deployment(staging_settings, token) as client:
        shown = await what_the_api_shows(client, world["cid"], world["attachment"])
    messages = shown["messages"]["messages"]
    originals = original["messages"]["messages"]
    assert [len(m["body"]) for m in messages] == [len(m["body"]) for m in originals]
    assert [m["created_at"] for m in messages] == [m["created_at"] for m in originals]
    assert [m["body"] for m in messages] != [m["body"] for m in originals]
    assert "@" in messages[0]["body"]  # an e-mail still looks like one
    assert len(shown["file"]) == len(ATTACHMENT) and shown["file"] != ATTACHMENT
    assert shown["conversation"]["title"] != original["conversation"]["title"]
    actors = {entry["actor"] for entry in shown["audit"]["entries"]}
    assert actors <= {f"user-{admin.user.id}", "cli:operator", "system"}
