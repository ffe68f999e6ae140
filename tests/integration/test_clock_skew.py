"""Clocks that disagree: one node's clock 5 minutes ahead (libfaketime), clients' timestamps a
day off. Order comes from the server's sequence, never a wall clock; what has an expiry —
stream tickets, presence — is judged by one clock (Redis's), and what compares clocks across
machines tolerates PARLEY_CLOCK_SKEW_SECONDS and reports a node beyond it.
"""

from __future__ import annotations

import glob
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import PostgresDatabases
from tests.support.cluster import Cluster, create_conversation, readiness, stored_messages
from tests.support.history import History
from tests.support.private_services import unavailable
from tests.support.streams import SseReader, WsReader, assert_in_order_once, eventually

LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), "")
AHEAD = 300


def faketime(offset_seconds: int) -> dict[str, str]:
    """Environment for a process whose wall clock runs `offset_seconds` off (monotonic is not)."""
    if not LIBFAKETIME:
        unavailable("libfaketime is not installed (apt-get install libfaketime)")
    return {
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME": f"{offset_seconds:+d}",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_NO_CACHE": "1",
    }


async def _online(url: str, token: str, user_id: int) -> bool:
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        response = await http.get("/v1/presence", params={"user_ids": str(user_id)})
    return user_id in response.json()["online"]


async def _ticket(url: str, token: str) -> str:
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        response = await http.post("/v1/stream/ticket")
    assert response.status_code == 200, response.text
    return str(response.json()["ticket"])


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_node_five_minutes_ahead_changes_no_order_and_no_expiry(
    postgres_databases: PostgresDatabases, redis_url: str, tmp_path: Path
) -> None:
    cluster = Cluster(
        database_url=await postgres_databases.fresh(),
        redis_url=redis_url,
        prefix=f"t{uuid.uuid4().hex[:12]}:",
        workdir=tmp_path,
        extra_env={"PARLEY_PRESENCE_TTL_SECONDS": "3", "PARLEY_CLOCK_SKEW_SECONDS": "600"},
    )
    try:
        (ahead,) = await cluster.start(1, **faketime(AHEAD))
        (normal,) = await cluster.start(1)
        beyond = (await cluster.start(1, **faketime(AHEAD), PARLEY_CLOCK_SKEW_SECONDS="60"))[0]
        alice, bob = await cluster.add_user("alice"), await cluster.add_user("bob")
        cid = await create_conversation(normal, alice, bob)
        alice_ws = await WsReader(ahead.url, alice.token).opened()
        bob_sse = await SseReader(normal.url, bob.token).open()

        # Order: sends alternate between the two clocks, each client stamping its own time a
        # day off in metadata; the timeline is the order of the acks, seq 1..n.
        history = History()
        real_now = datetime.now(UTC)
        for i in range(20):
            node, member = (ahead, alice) if i % 2 == 0 else (normal, bob)
            client_time = real_now + timedelta(days=1 if i % 2 == 0 else -1)
            op = await history.send(
                member.name,
                node.url,
                member.token,
                cid,
                f"m-{i}",
                metadata={"sent_at": client_time.isoformat()},
            )
            assert op.outcome == "ok", op
        stored = await stored_messages(normal, bob, cid)
        history.check(stored)
        assert [m["client_msg_id"] for m in stored] == [f"m-{i}" for i in range(20)]
        assert [op.ack["seq"] for op in history.ops if op.ack] == list(range(1, 21))
        # Stamped by the database's clock, whichever node stored it.
        for message in stored:
            stamped = datetime.fromisoformat(message["created_at"])
            assert abs((stamped - real_now).total_seconds()) < 60, message
            assert message["metadata"]["sent_at"]  # the client's own time, kept as it was
        await alice_ws.wait_for_messages(20)
        await bob_sse.wait_for_messages(20)
        for reader in (alice_ws, bob_sse):
            assert_in_order_once(reader.messages, after_pos=0)

        # Tickets expire by Redis's clock: issued on one node, redeemed on the other.
        for issuer, redeemer in ((ahead, normal), (normal, ahead)):
            ticket = await _ticket(issuer.url, alice.token)
            url = redeemer.url.replace("http://", "ws://") + f"/v1/stream/ws?ticket={ticket}"
            reader = WsReader(redeemer.url, "")
            reader.url = url
            await reader.opened()
            assert reader.events[0]["type"] == "hello", reader.events[:1]
            await reader.close()

        # Presence expires by Redis's clock too: the node 5 minutes ahead freezes, and its user
        # shows offline within the TTL, not 5 minutes later.
        assert await _online(normal.url, bob.token, alice.id)
        assert ahead.process is not None
        os.kill(ahead.process.pid, signal.SIGSTOP)
        try:
            await eventually(
                lambda: _not(_online(normal.url, bob.token, alice.id)),
                timeout=15,
                what="alice offline within the presence TTL",
            )
        finally:
            os.kill(ahead.process.pid, signal.SIGCONT)
        await alice_ws.close()
        await bob_sse.close()

        # Each node measures its clock against PostgreSQL's; within the tolerance it is "ok",
        # beyond it the node says so (degraded), and the metric has the offset either way.
        within, skewed, fine = [await readiness(n) for n in (ahead, beyond, normal)]
        assert within["checks"]["clock"] == "ok"
        assert fine["checks"]["clock"] == "ok" and fine["status"] == "ok"
        assert skewed["http_status"] == 200 and skewed["status"] == "degraded"
        assert "PARLEY_CLOCK_SKEW_SECONDS" in skewed["checks"]["clock"]
        offset = await _offset_metric(ahead.url)
        assert AHEAD - 30 < offset < AHEAD + 30
        assert abs(await _offset_metric(normal.url)) < 30
    finally:
        await cluster.stop()


async def _not(probe: object) -> bool:
    return not await probe  # type: ignore[misc]


async def _offset_metric(url: str) -> float:
    async with httpx.AsyncClient(base_url=url) as http:
        await http.get("/readyz")
        text = (await http.get("/metrics")).text
    line = next(x for x in text.splitlines() if x.startswith("parley_clock_offset_seconds "))
    return float(line.split()[-1])


def test_faketime_really_moves_a_process_clock() -> None:
    """The tool this file relies on works here (else the test above proves nothing)."""
    import subprocess
    import sys
    import time

    env = {**os.environ, **faketime(AHEAD)}
    shown = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert abs(float(shown.stdout) - time.time() - AHEAD) < 10
