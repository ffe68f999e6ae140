"""How long backup, verify, restore (with its comparison) and the anonymized copy take on a
deployment of a given size — the figures in docs/benchmarks.md, "Operations".

    python bench/ops_backup.py --messages 200000 --files 200 --file-kb 100            # SQLite
    python bench/ops_backup.py --postgres postgresql+asyncpg://postgres@127.0.0.1/x ...

It fills a scratch database (users, one conversation per 1,000 messages, messages of ~200
characters, attachment files), then times each operation once. The PostgreSQL database is
created and dropped by the script. Never run by the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from parley.features.ops.anonymize import create_anonymized_backup
from parley.features.ops.backup import create_backup, verify_backup
from parley.features.ops.restore import restore_to
from parley.settings import Settings
from parley.storage import snapshots
from parley.storage.migrate import upgrade_to_head

BODY = "Hello, this is a message about order 12345; mail me at someone@example.com. " * 3


async def fill(url: str, messages: int, files: int, file_kb: int, attachments: Path) -> None:
    engine = create_async_engine(url)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        for uid in (1, 2):
            await conn.execute(
                text(
                    "INSERT INTO users (id, name, display_name, role, internal, created_at) "
                    "VALUES (:id, :name, :name, 'member', false, :at)"
                ),
                {"id": uid, "name": f"user{uid}", "at": now},
            )
        conversations = max(1, messages // 1000)
        for cid in range(1, conversations + 1):
            await conn.execute(
                text(
                    "INSERT INTO conversations (id, kind, title, created_by, created_at, "
                    "last_seq, updated_pos) VALUES (:id, 'group', :t, 1, :at, 1000, 0)"
                ),
                {"id": cid, "t": f"Room {cid}", "at": now},
            )
        batch = []
        for pos in range(1, messages + 1):
            cid = (pos - 1) // 1000 + 1
            batch.append(
                {
                    "cid": cid,
                    "seq": (pos - 1) % 1000 + 1,
                    "pos": pos,
                    "sender": 1 + pos % 2,
                    "cm": f"c{pos}",
                    "body": BODY[: 150 + pos % 80],
                    "at": now,
                }
            )
            if len(batch) == 5000 or pos == messages:
                await conn.execute(
                    text(
                        "INSERT INTO messages (conversation_id, seq, pos, sender_id, "
                        "client_msg_id, body, attachments, metadata, created_at) VALUES "
                        "(:cid, :seq, :pos, :sender, :cm, :body, '[]', '{}', :at)"
                    ),
                    batch,
                )
                batch = []
    await engine.dispose()
    for index in range(files):
        key = f"att_{index:08d}{secrets.token_hex(4)}"
        path = attachments / key[:2] / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(file_kb * 1024))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--file-kb", type=int, default=100)
    parser.add_argument("--postgres", default="", help="a URL naming a database to create")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parley-bench-ops-") as work:
        root = Path(work)
        url = args.postgres or f"sqlite+aiosqlite:///{root / 'parley.db'}"
        if args.postgres:
            await snapshots.pg_create_database(url)
        try:
            upgrade_to_head(url)
            settings = Settings(database_url=url, data_dir=root / "data")
            await fill(url, args.messages, args.files, args.file_kb, settings.attachments_dir)
            figures: dict[str, float] = {}

            started = time.perf_counter()
            backup = await create_backup(settings, label="bench")
            figures["backup (incl. its verification)"] = time.perf_counter() - started
            started = time.perf_counter()
            await verify_backup(backup.path)
            figures["verify"] = time.perf_counter() - started
            target = (
                snapshots.with_database(url, f"{snapshots.database_name(url)}_r")
                if args.postgres
                else f"sqlite+aiosqlite:///{root / 'restored.db'}"
            )
            started = time.perf_counter()
            report = await restore_to(backup, target, attachments_dir=root / "restored")
            figures["restore + comparison"] = time.perf_counter() - started
            assert report.ok, report.problems
            if args.postgres:
                await snapshots.pg_drop_database(target)
            started = time.perf_counter()
            await create_anonymized_backup(settings)
            figures["anonymized copy"] = time.perf_counter() - started
            assert backup.manifest is not None
            print(
                json.dumps(
                    {
                        "database": backup.manifest.dialect,
                        "messages": args.messages,
                        "files": args.files,
                        "backup_mb": round(backup.manifest.size / 1e6, 1),
                        "seconds": {k: round(v, 2) for k, v in figures.items()},
                    },
                    indent=2,
                )
            )
        finally:
            if args.postgres:
                await snapshots.pg_drop_database(url)


if __name__ == "__main__":
    asyncio.run(main())
