"""A real `parley worker` process killed with SIGKILL mid-batch and started again: every
notification arrives, none is made twice (PostgreSQL: workers claim with SKIP LOCKED)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from parley.assembly import Services
from parley.core.models import ConversationKind, Role
from parley.core.notify import DeliveryStatus
from parley.features.notify.worker import NOTIFY_FLAG
from parley.settings import Settings
from tests.conftest import PostgresDatabases
from tests.support.notify_servers import SmtpCapture
from tests.support.waiting import eventually

RECIPIENTS = 40

pytestmark = pytest.mark.postgres


def start_worker(env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    with (workdir / "worker.log").open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "parley", "worker"],
            cwd=workdir,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def test_kill_9_mid_batch_loses_nothing_and_doubles_nothing(
    postgres_databases: PostgresDatabases, tmp_path: Path
) -> None:
    database_url = await postgres_databases.fresh()
    smtp = SmtpCapture(delay=0.03).start()
    env = {
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        "PARLEY_LOG_JSON": "false",
        "PARLEY_NOTIFY_DELAY_SECONDS": "0",
        "PARLEY_NOTIFY_BATCH": "5",
        "PARLEY_NOTIFY_CONCURRENCY": "1",
        "PARLEY_NOTIFY_LEASE_SECONDS": "2",
        "PARLEY_NOTIFY_POLL_SECONDS": "0.05",
        "PARLEY_SMTP_HOST": "127.0.0.1",
        "PARLEY_SMTP_PORT": str(smtp.port),
        "PARLEY_SMTP_TLS": "none",
    }
    services = Services.build(Settings(database_url=database_url, data_dir=tmp_path / "cli"))
    # No server runs in this process: nothing to publish to, only the database to fill.
    services.writer.on_commit = None

    async def nowhere(_event: object) -> None:
        return None

    services.timeline.publish = nowhere
    services.writer.start()
    try:
        await services.release.flags.do_update_flag(
            "test", NOTIFY_FLAG, {"enabled": True, "percentage": None}
        )
        sender = await services.identity.do_create_user("seller", role=Role.MEMBER)
        for i in range(RECIPIENTS):
            buyer = await services.identity.do_create_user(f"buyer{i}", role=Role.MEMBER)
            await services.notifications.store.update_preferences(
                buyer.id, {"email": f"buyer{i}@example.com"}
            )
            conversation, _ = await services.timeline.do_create_conversation(
                sender,
                kind=ConversationKind.DIRECT,
                title=f"contract {i}",
                member_names=[buyer.name],
            )
            await services.timeline.do_send(
                sender,
                conversation.id,
                client_msg_id=f"m{i}",
                body=f"offer {i}",
                attachment_ids=[],
                metadata={},
            )
    finally:
        await services.writer.stop()

    worker = start_worker(env, tmp_path)
    try:
        await eventually(lambda: len(smtp.mails) >= 12, timeout=60, what="a dozen mails")
        worker.send_signal(signal.SIGKILL)  # mid-batch: more are claimed, leased, in flight
        worker.wait(timeout=10)
        at_kill = len(smtp.mails)
        assert at_kill < RECIPIENTS
        worker = start_worker(env, tmp_path)
        await eventually(
            lambda: len({m["Message-ID"] for m in smtp.mails}) >= RECIPIENTS,
            timeout=90,
            what="every notification after the restart",
        )
        store = services.notifications.store

        async def settled() -> bool:
            found = await store.list_deliveries(limit=1000)
            return len(found) == RECIPIENTS and all(d.status is DeliveryStatus.SENT for d in found)

        # The send that was on the wire at the kill is taken back once its lease runs out.
        await eventually(settled, timeout=30, what="every delivery recorded as sent")
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=15)
    finally:
        if worker.poll() is None:
            worker.kill()
        smtp.stop()

    addresses = Counter(m["To"] for m in smtp.mails)
    ids = Counter(m["Message-ID"] for m in smtp.mails)
    assert set(addresses) == {f"buyer{i}@example.com" for i in range(RECIPIENTS)}
    # One notification per recipient (one Message-ID each). At most the one send that was on
    # the wire when the process died is repeated — with the same Message-ID, which mail systems
    # fold into one message.
    assert len(ids) == RECIPIENTS
    assert sum(ids.values()) - RECIPIENTS <= 1
    deliveries = await services.notifications.store.list_deliveries(limit=1000)
    assert sorted(d.user_id for d in deliveries) == sorted({d.user_id for d in deliveries})
    await services.db.dispose()
