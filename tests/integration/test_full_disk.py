"""Full disks: the attachment store's volume and the embedded database's, on small tmpfs mounts.

Uploads past the space answer 507 ERR_STORAGE_FULL (never a 500) and leave no half-written file;
text chat goes on; /readyz and /metrics say "nearly full" before it is. With the database's
volume full, sends answer 503 ERR_STORAGE_FULL (no ack without a commit) and succeed again, with
no restart, once space returns.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from parley.app import create_app
from parley.core.errors import StorageFull
from parley.settings import Settings
from parley.storage.blobs import LocalBlobStore
from tests.conftest import PeopleFactory, create_conversation
from tests.support.history import History
from tests.support.servers import ServerProcess, free_port
from tests.support.volumes import fill, small_volume

KIB = 1024


def _files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file() and p.name != "filler.bin")


async def _upload(person_http: httpx.AsyncClient, cid: int, size: int) -> httpx.Response:
    return await person_http.post(
        f"/v1/conversations/{cid}/attachments",
        files={"file": ("data.bin", os.urandom(size), "application/octet-stream")},
    )


def _metric(text: str, line_start: str) -> float:
    lines = text.splitlines()
    return next(float(line.split()[-1]) for line in lines if line.startswith(line_start))


@pytest.fixture
async def full_volume_app(database_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The app with its attachment store on a 1 MiB tmpfs; "nearly full" below 400 KiB."""
    with small_volume(tmp_path / "volume", "1m") as volume:
        settings = Settings(
            database_url=database_url,
            data_dir=volume,
            log_json=False,
            sqlite_synchronous="NORMAL",
            storage_min_free_bytes=400 * KIB,
        )
        application = create_app(settings)
        async with application.router.lifespan_context(application):
            yield application


async def test_uploads_past_the_space_get_507_and_text_chat_goes_on(
    full_volume_app: FastAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    people = PeopleFactory(full_volume_app, full_volume_app.state.services)
    try:
        alice, bob = await people.add(), await people.add()
        cid = await create_conversation(alice, bob)
        volume = full_volume_app.state.services.settings.data_dir
        filler = fill(volume, leave=700 * KIB)  # other data on the same volume
        ready = (await alice.http.get("/readyz")).json()
        assert ready["status"] == "ok" and ready["checks"]["attachments_volume"].startswith("ok")

        first = await _upload(alice.http, cid, 350 * KIB)
        assert first.status_code == 201, first.text
        ready = (await alice.http.get("/readyz")).json()
        # Warned before it is full: the status degrades, the metric says so, chat still works.
        assert ready["status"] == "degraded"
        assert ready["checks"]["attachments_volume"].startswith("nearly full")
        metrics = (await alice.http.get("/metrics")).text
        assert _metric(metrics, 'parley_storage_nearly_full{volume="attachments"}') == 1

        refused = await _upload(alice.http, cid, 500 * KIB)
        assert refused.status_code == 507, refused.text
        assert refused.json()["error"]["code"] == "ERR_STORAGE_FULL"
        assert _files(volume / "attachments") == [first.json()["id"]]  # nothing half-written

        sent = await alice.http.post(
            f"/v1/conversations/{cid}/messages",
            json={"client_msg_id": "text-1", "body": "text still goes through"},
        )
        assert sent.status_code == 201, sent.text
        with_file = await alice.http.post(
            f"/v1/conversations/{cid}/messages",
            json={"client_msg_id": "text-2", "body": "file", "attachments": [first.json()["id"]]},
        )
        assert with_file.status_code == 201, with_file.text
        downloaded = await bob.http.get(f"/v1/attachments/{first.json()['id']}")
        assert downloaded.status_code == 200 and len(downloaded.content) == 350 * KIB

        filler.unlink()  # space returns: uploads work again, readiness is back to ok
        again = await _upload(alice.http, cid, 500 * KIB)
        assert again.status_code == 201, again.text
        metrics = (await alice.http.get("/metrics")).text
        assert _metric(metrics, 'parley_storage_full_total{volume="attachments"}') >= 1
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        await people.close()


async def test_a_file_that_fills_the_volume_while_written_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    with small_volume(tmp_path / "blobs", "256k") as volume:
        store = LocalBlobStore(volume)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"x" * (64 * KIB)

        with pytest.raises(StorageFull):
            await store.put("att_fillsthevolume", chunks(), max_bytes=10 * 1024 * KIB)
        assert [p for p in volume.rglob("*") if p.is_file()] == []
        assert store.free_bytes() > 200 * KIB  # the partial file's space was given back


# -- the database's volume (embedded SQLite) -----------------------------------------------------


def test_with_the_database_volume_full_sends_fail_cleanly_and_recover_by_themselves(
    tmp_path: Path,
) -> None:
    with small_volume(tmp_path / "data", "8m") as data:
        env = {
            "PARLEY_DATABASE_URL": "",
            "PARLEY_REDIS_URL": "",
            "PARLEY_DATA_DIR": str(data),
            "PARLEY_DEMO": "true",
            "PARLEY_STORAGE_MIN_FREE_BYTES": str(512 * KIB),
        }
        node = ServerProcess(port=free_port(), workdir=tmp_path, env=env).start()
        try:
            asyncio.run(_fill_the_database_volume(node, data))
        finally:
            node.stop()


async def _fill_the_database_volume(node: ServerProcess, data: Path) -> None:
    async with httpx.AsyncClient(base_url=node.url, timeout=30) as http:
        token = (await http.post("/demo/session", json={"name": "alice"})).json()["token"]
        http.headers["Authorization"] = f"Bearer {token}"
        created = await http.post(
            "/v1/conversations", json={"kind": "group", "title": "t", "members": ["bob"]}
        )
        cid = int(created.json()["id"])
        history = History()
        filler = fill(data, leave=256 * KIB)
        assert (
            (await http.get("/readyz"))
            .json()["checks"]["database_volume"]
            .startswith("nearly full")
        )
        refusals = 0
        for i in range(400):  # 8 KB bodies: the WAL outgrows 256 KiB within ~40 sends
            op = await history.send("alice", node.url, token, cid, f"m-{i}", body_chars=8000)
            if op.outcome == "ok":
                refusals = 0
                continue
            assert op.status == 503, op
            refusals += 1
            if refusals == 3:
                break
        assert refusals == 3, "the volume never filled"
        refused = await http.post(
            f"/v1/conversations/{cid}/messages", json={"client_msg_id": "probe", "body": "x"}
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "ERR_STORAGE_FULL"
        # Reads go on while writes cannot.
        assert (await http.get(f"/v1/conversations/{cid}/messages")).status_code == 200

        filler.unlink()
        history.ops = [op for op in history.ops if op.client_msg_id != "probe"]
        await history.settle("alice", node.url, token, cid)
        for i in range(5):
            op = await history.send("alice", node.url, token, cid, f"after-{i}")
            assert op.outcome == "ok", op
        listed = await http.get(f"/v1/conversations/{cid}/messages", params={"limit": 500})
        history.check(listed.json()["messages"])
        metrics = (await http.get("/metrics")).text
        assert _metric(metrics, 'parley_storage_full_total{volume="database"}') >= 1
    assert "Traceback" not in node.log_path.read_text()
