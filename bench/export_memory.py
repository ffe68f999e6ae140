"""How much memory a conversation export takes, by conversation length (docs/benchmarks.md).

    python bench/export_memory.py --messages 10000 100000 [--database-url URL]

For each size: a fresh database (embedded SQLite unless --database-url) with one conversation of
that many messages (2 members, bodies of ~120 characters, one attachment every 1,000 messages),
then one export built in this process. Reports the Python heap peak during the build
(tracemalloc) and the process's RSS growth, the ZIP's size and the time. A bounded export shows
the same peak whatever the length.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, update

from parley.assembly import Services
from parley.core.exports import ExportKind
from parley.core.models import ConversationKind
from parley.settings import Settings
from parley.storage.migrate import upgrade_to_head
from parley.storage.schema import attachments, conversations, messages, stream_head


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def seed(services: Services, count: int) -> int:
    alice = await services.identity.do_create_user(f"alice{secrets.token_hex(3)}")
    bob = await services.identity.do_create_user(f"bob{secrets.token_hex(3)}")
    conversation, _ = await services.timeline.conversations.create_conversation(
        kind=ConversationKind.GROUP,
        title="bench",
        created_by=alice.id,
        member_ids=[bob.id],
        direct_key=None,
    )
    now = datetime.now(UTC)
    base = await services.stream.store.get_head()  # positions are deployment-wide and unique
    body = "lorem ipsum dolor sit amet, consectetur adipiscing elit " * 2
    batch = 5000
    for start in range(0, count, batch):
        rows = []
        for seq in range(start + 1, min(count, start + batch) + 1):
            refs = []
            if seq % 1000 == 0:
                att_id = f"att_bench{conversation.id}x{seq:010d}"
                data = os.urandom(32 * 1024)
                path = services.settings.attachments_dir / att_id[:2] / att_id
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                async with services.db.write() as conn:
                    await conn.execute(
                        insert(attachments).values(
                            id=att_id,
                            conversation_id=conversation.id,
                            uploader_id=alice.id,
                            file_name=f"file-{seq}.bin",
                            content_type="application/octet-stream",
                            size=len(data),
                            sha256="0" * 64,
                            created_at=now,
                        )
                    )
                refs = [
                    {
                        "id": att_id,
                        "file_name": f"file-{seq}.bin",
                        "content_type": "application/octet-stream",
                        "size": len(data),
                    }
                ]
            rows.append(
                {
                    "conversation_id": conversation.id,
                    "seq": seq,
                    "pos": base + seq,
                    "sender_id": alice.id if seq % 2 else bob.id,
                    "client_msg_id": f"c{seq}",
                    "body": f"{seq} {body}",
                    "attachments": refs,
                    "metadata": {},
                    "created_at": now,
                }
            )
        async with services.db.write() as conn:
            await conn.execute(insert(messages), rows)
    async with services.db.write() as conn:
        await conn.execute(
            update(conversations)
            .where(conversations.c.id == conversation.id)
            .values(last_seq=count)
        )
        await conn.execute(update(stream_head).values(pos=base + count))
    return conversation.id


async def measure(count: int, url: str | None, workdir: Path) -> dict[str, float]:
    data = workdir / f"data-{count}"
    settings = Settings(data_dir=data, database_url=url or "", log_json=False)
    upgrade_to_head(settings.effective_database_url)
    services = Services.build(settings)
    try:
        cid = await seed(services, count)
        job = await services.exports.do_request_conversation("bench", cid)
        assert job.kind is ExportKind.CONVERSATION
        before = rss_kib()
        tracemalloc.start()
        started = time.perf_counter()
        done = await services.exports.run(job)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return {
            "messages": count,
            "seconds": round(seconds, 2),
            "heap_peak_mib": round(peak / 2**20, 1),
            "rss_growth_mib": round((rss_kib() - before) / 1024, 1),
            "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "zip_mib": round((done.size or 0) / 2**20, 1),
        }
    finally:
        await services.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        for count in args.messages:
            print(asyncio.run(measure(count, args.database_url, Path(workdir))), flush=True)


if __name__ == "__main__":
    main()
