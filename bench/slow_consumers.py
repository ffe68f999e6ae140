"""Server memory while many stream clients stop reading during a flood (docs/benchmarks.md).

Starts an embedded server (`parley.bench.servers`), opens N WebSockets that complete the
handshake and then never read, floods their room with M messages of B bytes from one sender,
and samples the server's RSS and `parley_stream_queued_events` every 0.5 s until every stalled
client was cut loose (4008 queued, or dropped after PARLEY_STREAM_SEND_TIMEOUT_SECONDS).
Loopback only, bounded in count and time.

    .venv/bin/python bench/slow_consumers.py --stalled 50 --messages 3000 --body 4000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.uri import parse_uri

from parley.bench.servers import _vm_rss_kb, provision_users, raise_fd_limit, start_servers


async def stalled(url: str, token: str) -> asyncio.StreamWriter:
    """A WebSocket that reads its handshake answer and then nothing more."""
    ws_url = url.replace("http://", "ws://") + "/v1/stream/ws"
    protocol = ClientProtocol(parse_uri(ws_url))
    request = protocol.connect()
    request.headers["Authorization"] = f"Bearer {token}"
    protocol.send_request(request)
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=1024)
    writer.write(b"".join(protocol.data_to_send()))
    await reader.readuntil(b"\r\n\r\n")
    return writer


async def metric(http: httpx.AsyncClient, name: str) -> float:
    text = (await http.get("/metrics")).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("PARLEY_STREAM_QUEUE_LIMIT", str(args.queue_limit))
    os.environ.setdefault("PARLEY_STREAM_SEND_TIMEOUT_SECONDS", str(args.send_timeout))
    os.environ.setdefault("PARLEY_SQLITE_SYNCHRONOUS", "NORMAL")
    servers = start_servers("embedded", 1)
    try:
        url, pid = servers.urls[0], servers.pids[0]
        users = provision_users(f"slow{os.getpid()}", args.stalled + 1, servers.env)
        sender, rest = users[0], users[1:]
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            room = await http.post(
                "/v1/conversations",
                json={"kind": "group", "title": "flood", "members": [u.name for u in rest]},
                headers={"Authorization": f"Bearer {sender.token}"},
            )
            cid = room.json()["id"]
            writers = [await stalled(url, u.token) for u in rest]
            samples: list[tuple[float, float, float]] = []
            start = time.monotonic()
            baseline = _vm_rss_kb(pid) / 1024

            async def sample_forever() -> None:
                while True:
                    queued = await metric(http, 'parley_stream_queued_events{of="all"}')
                    samples.append((time.monotonic() - start, _vm_rss_kb(pid) / 1024, queued))
                    await asyncio.sleep(0.5)

            sampler = asyncio.create_task(sample_forever())
            acked = 0
            async with connect(
                url.replace("http://", "ws://") + "/v1/stream/ws",
                additional_headers={"Authorization": f"Bearer {sender.token}"},
                max_queue=None,
            ) as ws:

                async def read() -> None:
                    nonlocal acked
                    async for raw in ws:
                        if json.loads(raw)["type"] == "ack":
                            acked += 1

                reading = asyncio.create_task(read())
                body = "b" * args.body
                for i in range(args.messages):
                    while i - acked > 20:  # noqa: ASYNC110 - a send window
                        await asyncio.sleep(0.002)
                    await ws.send(
                        json.dumps(
                            {
                                "type": "send",
                                "conversation_id": cid,
                                "client_msg_id": f"f{i}",
                                "body": body,
                            }
                        )
                    )
                flooded = time.monotonic() - start
                deadline = time.monotonic() + args.send_timeout + 30
                while time.monotonic() < deadline:
                    if await metric(http, 'parley_stream_connections{transport="ws"}') <= 1:
                        break
                    await asyncio.sleep(0.5)
                dropped = time.monotonic() - start
                await asyncio.sleep(3)
                reading.cancel()
            sampler.cancel()
            slow = await metric(http, "parley_slow_consumer_disconnects_total")
            for writer in writers:
                writer.close()
        peak = max(s[1] for s in samples)
        return {
            "stalled_clients": args.stalled,
            "messages": args.messages,
            "body_bytes": args.body,
            "flood_mb_per_client": round(args.messages * args.body / 1e6, 1),
            "queue_limit": args.queue_limit,
            "rss_baseline_mb": round(baseline, 1),
            "rss_peak_mb": round(peak, 1),
            "rss_after_mb": round(samples[-1][1], 1),
            "peak_queued_events": max(s[2] for s in samples),
            "flood_seconds": round(flooded, 1),
            "all_cut_loose_seconds": round(dropped, 1),
            "slow_consumer_disconnects": slow,
            "extra_kib_per_stalled_client": round((peak - baseline) * 1024 / args.stalled, 1),
        }
    finally:
        servers.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stalled", type=int, default=50)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--body", type=int, default=4000)
    parser.add_argument("--queue-limit", type=int, default=10_000)
    parser.add_argument("--send-timeout", type=float, default=10)
    raise_fd_limit()
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
