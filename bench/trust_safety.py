"""Trust & safety costs, measured: what the moderation filters add to a send, and how late an
SLA deadline fires.

    .venv/bin/python bench/trust_safety.py            # embedded SQLite in a temporary dir

1. `ModerationGuard.screen_send` per call (the check every send makes before it is stored),
   with no rules, and with a 1,000-word list + 10 regexes + a link rule on a 300-character
   message; and how many SQL statements 1,000 allowed sends issue (the promise: none).
2. REST sends per second through the in-process app, without and with those rules.
3. SLA firing lag: 20 disputes with deadlines 1-3 s out; `sla_breached_at - deadline_at`.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

from parley.app import create_app
from parley.core.models import ConversationKind, NewMessage, Role
from parley.settings import Settings
from parley.storage.migrate import upgrade_to_head

WORDS = [f"badword{i}" for i in range(1000)]
PATTERNS = [rf"\bcode{i}-\d{{4}}\b" for i in range(10)]
BODY = (
    "Hello, the parcel arrives on Tuesday; see https://shop.example.com/track/12345 for details. "
) * 3


def _settings(workdir: Path, **extra: Any) -> Settings:
    url = f"sqlite+aiosqlite:///{workdir / 'parley.db'}"
    upgrade_to_head(url)
    return Settings(
        database_url=url, data_dir=workdir, log_json=False, sqlite_synchronous="NORMAL", **extra
    )


async def _rules(services: Any) -> None:
    actor = "bench"
    moderation = services.moderation
    await moderation.do_add_rule(
        actor,
        name="words",
        kind="words",
        verdict="hold_for_review",
        scope="all",
        scope_value="",
        config={"words": WORDS},
    )
    await moderation.do_add_rule(
        actor,
        name="regex",
        kind="regex",
        verdict="reject",
        scope="all",
        scope_value="",
        config={"patterns": PATTERNS},
    )
    await moderation.do_add_rule(
        actor,
        name="links",
        kind="links",
        verdict="reject",
        scope="all",
        scope_value="",
        config={"mode": "block_domains", "domains": ["evil.example"]},
    )


async def screen_cost(workdir: Path) -> None:
    app = create_app(_settings(workdir))
    async with app.router.lifespan_context(app):
        services = app.state.services
        user = await services.identity.do_create_user("sender", role=Role.MEMBER)
        conversation, _ = await services.timeline.conversations.create_conversation(
            kind=ConversationKind.GROUP, title="t", created_by=user.id, member_ids=[]
        )
        guard = services.moderation.guard
        statements = 0

        def count(*_args: Any) -> None:
            nonlocal statements
            statements += 1

        engines = {services.db._reader.sync_engine, services.db._writer.sync_engine}
        for label in ("no rules", "1,000 words + 10 regexes + links"):
            if label != "no rules":
                await _rules(services)
            for engine in engines:
                event.listen(engine, "before_cursor_execute", count)
            statements = 0
            runs = 20_000
            started = time.perf_counter()
            for i in range(runs):
                send = NewMessage(conversation.id, user.id, f"c{i}", BODY)
                assert await guard.screen_send(user, conversation, send) is None
            per_call = (time.perf_counter() - started) / runs * 1e6
            for engine in engines:
                event.remove(engine, "before_cursor_execute", count)
            print(
                f"screen_send, {label}: {per_call:.1f} µs per send, "
                f"{statements} SQL statements for {runs} allowed sends"
            )


async def rest_rate(workdir: Path, with_rules: bool) -> float:
    app = create_app(_settings(workdir))
    async with app.router.lifespan_context(app):
        services = app.state.services
        user = await services.identity.do_create_user("sender", role=Role.MEMBER)
        token = await services.identity.do_issue_token(user)
        if with_rules:
            await _rules(services)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://bench",
            headers={"Authorization": f"Bearer {token}"},
        ) as http:
            made = await http.post("/v1/conversations", json={"kind": "room", "title": "b"})
            cid = made.json()["id"]
            sends, concurrency = 4000, 32

            async def worker(offset: int) -> None:
                for i in range(offset, sends, concurrency):
                    answer = await http.post(
                        f"/v1/conversations/{cid}/messages",
                        json={"client_msg_id": f"m{i}", "body": BODY},
                    )
                    assert answer.status_code == 201, answer.text

            started = time.perf_counter()
            await asyncio.gather(*(worker(k) for k in range(concurrency)))
            return sends / (time.perf_counter() - started)


async def sla_lag(workdir: Path) -> None:
    app = create_app(_settings(workdir, dispute_sla_open_seconds=1))
    async with app.router.lifespan_context(app):
        services = app.state.services
        await services.release.flags.do_update_flag("bench", "dispute_tools_v2", {"enabled": True})
        agent = await services.identity.do_create_user("agent", role=Role.DISPUTE_OPS)
        buyer = await services.identity.do_create_user("buyer", role=Role.MEMBER)
        seller = await services.identity.do_create_user("seller", role=Role.MEMBER)
        conversation, _ = await services.timeline.conversations.create_conversation(
            kind=ConversationKind.GROUP, title="t", created_by=buyer.id, member_ids=[seller.id]
        )
        opened = []
        for i in range(20):
            opened.append(
                await services.disputes.do_open(
                    agent,
                    conversation_id=conversation.id,
                    buyer="buyer",
                    seller="seller",
                    amount=100,
                    currency="EUR",
                    reference=f"r{i}",
                    reason="",
                )
            )
            await asyncio.sleep(0.1)  # deadlines spread over two seconds
        await asyncio.sleep(4)
        lags = []
        for dispute in opened:
            fired = await services.disputes.store.get_dispute(dispute.id)
            assert fired is not None and fired.sla_breached_at and fired.deadline_at
            lags.append((fired.sla_breached_at - fired.deadline_at).total_seconds() * 1000)
        lags.sort()
        print(
            f"SLA firing lag over {len(lags)} deadlines: median {statistics.median(lags):.0f} ms,"
            f" max {max(lags):.0f} ms (scheduler cap "
            f"{services.settings.dispute_scheduler_seconds} s)"
        )


async def main() -> None:
    with tempfile.TemporaryDirectory() as one:
        await screen_cost(Path(one))
    rates = {}
    for with_rules in (False, True):
        with tempfile.TemporaryDirectory() as one:
            rates[with_rules] = await rest_rate(Path(one), with_rules)
    print(
        f"REST sends/s (in-process app, 32 concurrent, SQLite): no rules {rates[False]:.0f}, "
        f"with rules {rates[True]:.0f} ({rates[True] / rates[False]:.0%})"
    )
    with tempfile.TemporaryDirectory() as one:
        await sla_lag(Path(one))


if __name__ == "__main__":
    asyncio.run(main())
