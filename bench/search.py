"""Search latency on a large timeline: SQLite (FTS5) and PostgreSQL (tsvector + GIN).

Seeds a scratch database with users, conversations and N messages (default 1,000,000) whose
words follow a Zipf distribution, plus marker words of known frequency, then times searches
through the real service (`Search.search`: parse, the SQL with its membership and tombstone
filters, snippets) for two users: one in 20 conversations, one in 2,000. Prints p50/p95 per
query; `--json` for machines. Never run by the test suite.

    .venv/bin/python bench/search.py --database sqlite
    .venv/bin/python bench/search.py --database postgres      # PARLEY_TEST_POSTGRES_DSN admin

The PostgreSQL database is created for the run and dropped afterwards (unless --keep); the
SQLite file lives in a temporary directory (or --path).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from parley.assembly import Services
from parley.core.models import User
from parley.services.search import SearchFilters
from parley.settings import Settings
from parley.storage.migrate import upgrade_to_head

ADMIN_DSN = os.environ.get("PARLEY_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SYLLABLES = [a + b for a in "bdfgklmnprstvz" for b in ("a", "e", "i", "o", "u", "ai", "ou")]
RARE, MEDIUM, ABSENT = "zanzibar", "quokka", "xylograph"
RARE_COUNT, MEDIUM_COUNT = 20, 2_000
USERS, CONVERSATIONS = 2_000, 10_000
SMALL_USER_CONVERSATIONS, BIG_USER_CONVERSATIONS = 20, 2_000
START = datetime(2026, 1, 1, tzinfo=UTC)


def vocabulary(size: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    words -= {RARE, MEDIUM, ABSENT}
    return sorted(words)


class World:
    """Everything seeded, as rows for either database."""

    def __init__(self, messages: int, seed: int) -> None:
        rng = random.Random(seed)
        self.rng = rng
        self.messages = messages
        self.words = vocabulary(30_000, rng)
        # Zipf (s = 1.07): the most common word is in most messages, the tail in a few.
        weights = [1 / (rank**1.07) for rank in range(1, len(self.words) + 1)]
        self.cumulative = list(itertools.accumulate(weights))
        self.members: dict[int, list[int]] = {}
        for cid in range(1, CONVERSATIONS + 1):
            self.members[cid] = rng.sample(range(3, USERS + 1), rng.randint(2, 12))
        for cid in range(1, SMALL_USER_CONVERSATIONS + 1):
            self.members[cid].append(1)
        for cid in range(1, BIG_USER_CONVERSATIONS + 1):
            self.members[cid].append(2)
        self.rare_at = set(rng.sample(range(messages), RARE_COUNT))
        self.medium_at = set(rng.sample(range(messages), MEDIUM_COUNT))

    def body(self, index: int) -> str:
        words = self.rng.choices(self.words, cum_weights=self.cumulative, k=self.rng.randint(6, 18))
        if index in self.rare_at:
            words.insert(self.rng.randrange(len(words)), RARE)
        if index in self.medium_at:
            words.insert(self.rng.randrange(len(words)), MEDIUM)
        return " ".join(words)

    def message_rows(self) -> Iterator[tuple[Any, ...]]:
        """(conversation_id, seq, pos, sender_id, client_msg_id, body, attachments, created_at)"""
        seqs: dict[int, int] = {}
        step = timedelta(days=365) / self.messages
        for index in range(self.messages):
            cid = self.rng.randint(1, CONVERSATIONS)
            seqs[cid] = seqs.get(cid, 0) + 1
            sender = self.rng.choice(self.members[cid])
            attachments = (
                [
                    {
                        "id": f"att_{index}",
                        "file_name": "f.txt",
                        "content_type": "text/plain",
                        "size": 1,
                    }
                ]
                if self.rng.random() < 0.02
                else []
            )
            yield (
                cid,
                seqs[cid],
                index + 1,
                sender,
                f"b{index}",
                self.body(index),
                json.dumps(attachments),
                START + step * index,
            )
        self.last_seq = seqs


# -- seeding -----------------------------------------------------------------------------------


def seed_sqlite(path: Path, world: World) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    now = "2026-01-01 00:00:00.000000"
    db.executemany(
        "INSERT INTO users (id, name, display_name, role, internal, created_at) "
        "VALUES (?, ?, ?, 'member', 0, ?)",
        [(uid, f"u{uid}", f"User {uid}", now) for uid in range(1, USERS + 1)],
    )
    db.executemany(
        "INSERT INTO conversations (id, kind, title, created_by, created_at, last_seq, updated_pos)"
        " VALUES (?, 'group', ?, ?, ?, 0, 0)",
        [(cid, f"c{cid}", m[0], now) for cid, m in world.members.items()],
    )
    db.executemany(
        "INSERT INTO members (conversation_id, user_id, role, delivered_seq, read_seq, joined_at, "
        "updated_pos) VALUES (?, ?, 'member', 0, 0, ?, 0)",
        [(cid, uid, now) for cid, m in world.members.items() for uid in m],
    )
    db.commit()
    rows = world.message_rows()
    inserted = 0
    while batch := list(itertools.islice(rows, 50_000)):
        db.executemany(
            "INSERT INTO messages (conversation_id, seq, pos, sender_id, client_msg_id, body, "
            "attachments, metadata, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, '{}', ?)",
            [(*row[:7], row[7].strftime("%Y-%m-%d %H:%M:%S.%f")) for row in batch],
        )
        db.commit()
        inserted += len(batch)
        progress(inserted, world.messages)
    db.executemany(
        "UPDATE conversations SET last_seq = ? WHERE id = ?",
        [(seq, cid) for cid, seq in world.last_seq.items()],
    )
    db.execute("UPDATE stream_head SET pos = ?", (world.messages,))
    db.commit()
    db.execute("ANALYZE")
    db.close()


async def seed_postgres(dsn: str, world: World) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        now = START
        await conn.copy_records_to_table(
            "users",
            records=[
                (uid, f"u{uid}", f"User {uid}", "member", False, now) for uid in range(1, USERS + 1)
            ],
            columns=["id", "name", "display_name", "role", "internal", "created_at"],
        )
        await conn.copy_records_to_table(
            "conversations",
            records=[
                (cid, "group", f"c{cid}", m[0], now, 0, 0) for cid, m in world.members.items()
            ],
            columns=["id", "kind", "title", "created_by", "created_at", "last_seq", "updated_pos"],
        )
        await conn.copy_records_to_table(
            "members",
            records=[
                (cid, uid, "member", 0, 0, now, 0) for cid, m in world.members.items() for uid in m
            ],
            columns=[
                "conversation_id",
                "user_id",
                "role",
                "delivered_seq",
                "read_seq",
                "joined_at",
                "updated_pos",
            ],
        )
        rows = world.message_rows()
        inserted = 0
        while batch := list(itertools.islice(rows, 50_000)):
            await conn.copy_records_to_table(
                "messages",
                records=[(*row[:7], "{}", row[7]) for row in batch],
                columns=[
                    "conversation_id",
                    "seq",
                    "pos",
                    "sender_id",
                    "client_msg_id",
                    "body",
                    "attachments",
                    "metadata",
                    "created_at",
                ],
            )
            inserted += len(batch)
            progress(inserted, world.messages)
        await conn.executemany(
            "UPDATE conversations SET last_seq = $1 WHERE id = $2",
            [(seq, cid) for cid, seq in world.last_seq.items()],
        )
        await conn.execute("UPDATE stream_head SET pos = $1", world.messages)
        for table in ("users", "conversations"):  # ids given above: move their sequences on
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                f"(SELECT max(id) FROM {table}))"
            )
        await conn.execute("VACUUM ANALYZE messages")
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def progress(done: int, total: int) -> None:
    print(f"\r  seeded {done:,} / {total:,} messages", end="", file=sys.stderr, flush=True)
    if done == total:
        print(file=sys.stderr)


# -- measuring ---------------------------------------------------------------------------------


def queries(world: World) -> list[tuple[str, str, SearchFilters]]:
    common = world.words[0]
    # A sender who is in the small user's first conversation writes something there.
    sender = world.members[1][0]
    return [
        ("rare word (20 in 1M)", RARE, SearchFilters()),
        ("medium word (2,000 in 1M)", MEDIUM, SearchFilters()),
        ("most common word", common, SearchFilters()),
        ("two words (medium AND common)", f"{MEDIUM} {common}", SearchFilters()),
        ("prefix (quok*)", "quok*", SearchFilters()),
        ("common word from: one sender", f"{common} from:u{sender}", SearchFilters()),
        ("medium word has:attachment", f"{MEDIUM} has:attachment", SearchFilters()),
        ("common word in: one conversation", f"{common} in:1", SearchFilters()),
        ("common word after: last month", f"{common} after:2026-12-01", SearchFilters()),
        ("no match", ABSENT, SearchFilters()),
    ]


async def measure(settings: Settings, world: World, repeat: int) -> list[dict[str, Any]]:
    services = Services.build(settings)
    results: list[dict[str, Any]] = []
    try:
        searchers: list[tuple[str, User]] = []
        for uid, label in ((1, "in 20 conversations"), (2, "in 2,000 conversations")):
            user = await services.identity.users.get_user(uid)
            assert user is not None
            searchers.append((label, user))
        for label, text, filters in queries(world):
            for who, user in searchers:
                query = services.search.check_query(text, filters)
                for _ in range(3):  # warm caches, as a live server is
                    await services.search.search(user, query, cursor=None, limit=20)
                times: list[float] = []
                hits = 0
                for _ in range(repeat):
                    started = time.perf_counter()
                    page = await services.search.search(user, query, cursor=None, limit=20)
                    times.append((time.perf_counter() - started) * 1000)
                    hits = len(page.hits)
                times.sort()
                results.append(
                    {
                        "query": label,
                        "q": text,
                        "user": who,
                        "hits": hits,
                        "p50_ms": round(statistics.median(times), 2),
                        "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 2),
                        "max_ms": round(times[-1], 2),
                    }
                )
                print(
                    f"  {label:<36} {who:<24} {results[-1]['p50_ms']:>8.2f} ms p50"
                    f" {results[-1]['p95_ms']:>8.2f} ms p95  ({hits} hits)",
                    file=sys.stderr,
                )
    finally:
        await services.db.dispose()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--path", type=Path, help="the SQLite file (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    parser.add_argument(
        "--reuse",
        metavar="NAME",
        help="measure a database seeded before: a kept PostgreSQL database's name, or for "
        "SQLite an existing --path (same --messages and --seed)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    world = World(args.messages, args.seed)
    started = time.monotonic()
    temporary = None
    database = None
    if args.database == "sqlite":
        if args.path is None:
            temporary = tempfile.TemporaryDirectory(prefix="parley-search-")
            args.path = Path(temporary.name) / "parley.db"
        url = f"sqlite+aiosqlite:///{args.path}"
        if not args.reuse:
            upgrade_to_head(url)
            seed_sqlite(args.path, world)
    elif args.reuse:
        database = args.reuse
        args.keep = True
        url = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        url += f"/{database}"
    else:
        database = f"parley_bench_search_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(ADMIN_DSN)
        await admin.execute(f'CREATE DATABASE "{database}"')
        await admin.close()
        dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}"
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        await asyncio.to_thread(upgrade_to_head, url)
        await seed_postgres(dsn, world)
    seeded = time.monotonic() - started
    print(f"  seeded in {seeded:.0f} s", file=sys.stderr)
    try:
        settings = Settings(database_url=url, data_dir=Path(tempfile.gettempdir()) / "parley-bench")
        results = await measure(settings, world, args.repeat)
    finally:
        if database and not args.keep:
            admin = await asyncpg.connect(ADMIN_DSN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.close()
        if temporary is not None:
            temporary.cleanup()
    report = {
        "database": args.database,
        "messages": args.messages,
        "conversations": CONVERSATIONS,
        "users": USERS,
        "seed_seconds": round(seeded),
        "load_average": os.getloadavg()[0],
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.database}: {args.messages:,} messages, load {report['load_average']:.1f}")
        for row in results:
            print(
                f"| {row['query']} | {row['user']} | {row['hits']} | {row['p50_ms']} | "
                f"{row['p95_ms']} |"
            )


if __name__ == "__main__":
    asyncio.run(main())
