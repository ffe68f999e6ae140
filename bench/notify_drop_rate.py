"""Notification drop rate under load (docs/benchmarks.md, "Notifications").

Many members, each offline in a contract conversation with e-mail and a Web Push subscription,
get a message; the worker (in this process) sends through a local SMTP server and a local push
endpoint that decrypts every request, both failing a share of attempts on purpose: transient
refusals (SMTP 451, push 503, retried with backoff) and a few addresses refused for good (SMTP
550: dead-lettered at once). Prints per channel: sent, dropped, drop rate, attempts, time.

    python bench/notify_drop_rate.py --members 500 --transient 0.1 --permanent 0.002
    PARLEY_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1/parley_bench python bench/...

Bounded: it stops when every delivery is finished or after --timeout seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.notify_servers import PushService, SmtpCapture, vapid_pair

from parley.assembly import Services
from parley.core.models import ConversationKind, Role
from parley.features.notify.worker import NOTIFY_FLAG
from parley.settings import Settings
from parley.storage.migrate import upgrade_to_head


async def main(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    smtp = SmtpCapture().start()
    vapid = vapid_pair()
    push = PushService(vapid_public_key=vapid[1]).start()
    broken = {f"m{i}@example.com" for i in range(args.members) if rng.random() < args.permanent}

    def smtp_fail(_n: int, mail: Any) -> str | None:
        if mail["To"] in broken:
            return "550 5.1.1 no such mailbox"
        return "451 4.3.0 try later" if rng.random() < args.transient else None

    smtp.fail = smtp_fail
    push.fail = lambda _n, _name: 503 if rng.random() < args.transient else None

    data = Path(tempfile.mkdtemp(prefix="parley-notify-bench-"))
    url = os.environ.get("PARLEY_DATABASE_URL") or f"sqlite+aiosqlite:///{data / 'parley.db'}"
    upgrade_to_head(url)
    settings = Settings(
        database_url=url,
        data_dir=data,
        log_json=False,
        notify_worker="external",
        notify_delay_seconds=0,
        notify_retry_base_seconds=args.retry_base,
        notify_max_attempts=args.attempts,
        notify_poll_seconds=0.05,
        notify_concurrency=args.concurrency,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_tls="none",
        push_vapid_private_key=vapid[0],
        push_vapid_public_key=vapid[1],
        push_endpoint_hosts=["127.0.0.1"],
    )
    services = Services.build(settings)
    services.writer.on_commit = None

    async def nowhere(_event: object) -> None:
        return None

    services.timeline.publish = nowhere
    services.writer.start()
    store = services.notifications.store
    await services.release.flags.do_update_flag(
        "bench", NOTIFY_FLAG, {"enabled": True, "percentage": None}
    )
    seller = await services.identity.do_create_user("seller", role=Role.MEMBER)
    names = [f"m{i}" for i in range(args.members)]
    buyers = await services.identity.do_create_users(names, label="bench")
    for (buyer, _token), name in zip(buyers, names, strict=True):
        await store.update_preferences(buyer.id, {"email": f"{name}@example.com"})
        browser = push.browser(name)
        sub = browser.subscription()
        await store.add_subscription(
            buyer.id,
            endpoint=sub["endpoint"],
            p256dh=sub["keys"]["p256dh"],
            auth=sub["keys"]["auth"],
            user_agent="bench",
        )
    conversations = []
    for buyer, _ in buyers:
        conversation, _ = await services.timeline.do_create_conversation(
            seller,
            kind=ConversationKind.DIRECT,
            title=f"contract {buyer.id}",
            member_names=[buyer.name],
        )
        conversations.append(conversation.id)
    started = time.perf_counter()
    await asyncio.gather(
        *(
            services.timeline.do_send(
                seller,
                cid,
                client_msg_id=f"b{cid}",
                body="new offer",
                attachment_ids=[],
                metadata={},
            )
            for cid in conversations
        )
    )
    await services.writer.stop()
    stored = time.perf_counter() - started

    worker = services.notifications.worker
    worker.start()
    deadline = time.monotonic() + args.timeout
    expected = 2 * args.members
    while time.monotonic() < deadline:
        by_status = await store.count_by_status()
        finished = sum(by_status.get(s, 0) for s in ("sent", "dead", "expired"))
        if finished >= expected and not by_status.get("pending") and not by_status.get("sending"):
            break
        await asyncio.sleep(0.2)
    elapsed = time.perf_counter() - started
    await worker.stop()
    rates = await services.notifications.drop_rates(datetime.now(UTC) - timedelta(hours=1))
    result = {
        "database": "postgresql" if services.db.is_postgres else "sqlite",
        "members": args.members,
        "deliveries_expected": expected,
        "transient_failure_share": args.transient,
        "permanently_broken_addresses": len(broken),
        "max_attempts": args.attempts,
        "messages_stored_s": round(stored, 2),
        "all_finished_s": round(elapsed, 2),
        "smtp_attempts": smtp.attempts,
        "push_attempts": push.attempts,
        "push_decrypt_problems": len(push.problems),
        "channels": {
            r.channel: {"sent": r.sent, "dropped": r.dropped, "drop_rate": round(r.rate, 5)}
            for r in rates
            if r.attempted
        },
        "status": await store.count_by_status(),
    }
    await services.db.dispose()
    smtp.stop()
    push.stop()
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--transient", type=float, default=0.1, help="share of attempts refused")
    parser.add_argument("--permanent", type=float, default=0.0, help="share of broken addresses")
    parser.add_argument("--attempts", type=int, default=6)
    parser.add_argument("--retry-base", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--seed", type=int, default=13)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
