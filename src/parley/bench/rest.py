"""The `rest` load shape: C senders POST N messages into one conversation, closed loop.

Each sender is its own user with its own token and its own keep-alive HTTP/1.1 connection,
and sends its next message as soon as the last one is answered (201: durable), like the
issue's Synapse comparison (16 concurrent senders into one room, and one sender at a time).
The client is a few lines over asyncio streams rather than httpx: at thousands of requests/s
on a shared 2-core box a general HTTP client would be the bottleneck being measured.

Measured: sends/s over the sending time, p50/p95/p99 of request->201, server CPU per send,
the writer's mean batch size (from `parley_writer_batch_size` on /metrics), and P0: every
answered send must have a distinct `seq` and `pos`, the `seq`s must be 1..n without a gap, and
the conversation's `last_seq` must equal the sends answered.
"""

from __future__ import annotations

import asyncio
import json
import math
import resource
import secrets
import time
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit

import httpx

from parley.bench.servers import BenchUser, ServerSet
from parley.bench.stats import Latencies

Progress = Any  # Callable[[str], None]; kept loose to match the other scenarios' helpers

BATCH_SUM = "parley_writer_batch_size_sum"
BATCH_COUNT = "parley_writer_batch_size_count"


@dataclass
class RestConfig:
    messages: int = 2000
    concurrency: int = 16
    duration: float = 30  # a cap on the sending time; the count usually ends the run first
    body_bytes: int = 100


@dataclass
class _Tally:
    latency: Latencies = field(default_factory=Latencies)
    statuses: dict[str, int] = field(default_factory=dict)
    seqs: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    next_index: int = 0
    last_answer_ns: int = 0


async def run_rest(
    config: RestConfig, servers: ServerSet, users: list[BenchUser], progress: Progress
) -> dict[str, Any]:
    """Create one conversation of `users`, then let each of them send, one request at a time."""
    url = servers.urls[0]
    senders = users[: config.concurrency]
    conversation_id = await _create_room(url, senders)
    counters_before = await servers.scrape()
    tally = _Tally()
    body = "x" * config.body_bytes
    tag = secrets.token_hex(4)
    cpu0, usage0 = servers.cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic_ns()
    deadline = time.monotonic() + config.duration
    progress(f"rest: {config.concurrency} sender(s), {config.messages} messages")
    await asyncio.gather(
        *(
            _sender(url, user, conversation_id, body, f"{tag}.{n}", config, tally, deadline)
            for n, user in enumerate(senders)
        )
    )
    end = time.monotonic_ns()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = servers.cpu_seconds() - cpu0
    counters_after = await servers.scrape()
    last_seq = await _last_seq(url, senders[0], conversation_id)
    ok = tally.statuses.get("201", 0)
    wall = max(1e-9, (end - start) / 1e9)
    sending = max(1e-9, ((tally.last_answer_ns or end) - start) / 1e9)
    batches = counters_after.get(BATCH_COUNT, 0.0) - counters_before.get(BATCH_COUNT, 0.0)
    batched = counters_after.get(BATCH_SUM, 0.0) - counters_before.get(BATCH_SUM, 0.0)
    latency = tally.latency.summary()
    p0 = _p0(tally, ok, last_seq)
    errors = {status: count for status, count in tally.statuses.items() if status != "201"}
    return {
        "scenario": "rest",
        "config": asdict(config),
        "conversation_id": conversation_id,
        "summary": {
            "sends_per_s": round(ok / sending, 1),
            "sent": tally.next_index,
            "ok": ok,
            "p50_ms": latency["p50"],
            "p95_ms": latency["p95"],
            "p99_ms": latency["p99"],
            "server_cpu_ms_per_send": round(server_cpu * 1000 / max(1, ok), 3),
            "server_cpu_cores": round(server_cpu / wall, 2),
            "client_cpu_cores": round(
                (usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime) / wall, 2
            ),
            "writer_batches": int(batches),
            "writer_mean_batch": round(batched / batches, 2) if batches else math.nan,
            "seconds": round(sending, 2),
            "p0_total": p0["total"],
        },
        "latency_ms": latency,
        "p0": p0,
        "errors": errors,
    }


async def _sender(
    url: str,
    user: BenchUser,
    conversation_id: int,
    body: str,
    tag: str,
    config: RestConfig,
    tally: _Tally,
    deadline: float,
) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    reader, writer = await asyncio.open_connection(host, port)
    head = (
        f"POST /v1/conversations/{conversation_id}/messages HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\nAuthorization: Bearer {user.token}\r\n"
        "Content-Type: application/json\r\n"
    )
    try:
        sent = 0
        while tally.next_index < config.messages and time.monotonic() < deadline:
            tally.next_index += 1
            sent += 1
            payload = json.dumps({"client_msg_id": f"{tag}.{sent}", "body": body}).encode()
            request = f"{head}Content-Length: {len(payload)}\r\n\r\n".encode() + payload
            began = time.monotonic_ns()
            writer.write(request)
            status, answer = await _response(reader)
            now = time.monotonic_ns()
            tally.latency.add((now - began) / 1e6)
            tally.last_answer_ns = max(tally.last_answer_ns, now)
            tally.statuses[str(status)] = tally.statuses.get(str(status), 0) + 1
            if status == 201:
                message = json.loads(answer)
                tally.seqs.append(int(message["seq"]))
                tally.positions.append(int(message["pos"]))
    finally:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length body (what the server always sends here)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length) if length else b""


async def _create_room(url: str, users: list[BenchUser]) -> int:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.post(
            "/v1/conversations",
            json={
                "kind": "room",
                "title": f"rest bench {users[0].name}",
                "members": [u.name for u in users[1:]],
            },
            headers={"Authorization": f"Bearer {users[0].token}"},
        )
        response.raise_for_status()
        return int(response.json()["id"])


async def _last_seq(url: str, user: BenchUser, conversation_id: int) -> int:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.get(
            f"/v1/conversations/{conversation_id}",
            headers={"Authorization": f"Bearer {user.token}"},
        )
        response.raise_for_status()
        return int(response.json()["last_seq"])


def _p0(tally: _Tally, ok: int, last_seq: int) -> dict[str, Any]:
    seqs = sorted(tally.seqs)
    repeated_seq = len(seqs) - len(set(seqs))
    repeated_pos = len(tally.positions) - len(set(tally.positions))
    gaps = sum(1 for a, b in pairwise(seqs) if b - a > 1)
    if seqs and seqs[0] != 1:
        gaps += 1
    counts = {
        "repeated_seq": repeated_seq,
        "repeated_pos": repeated_pos,
        "seq_gaps": gaps,
        "last_seq_mismatch": int(last_seq != ok),
    }
    return {**counts, "total": sum(counts.values())}
