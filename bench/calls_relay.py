"""Call signalling relay latency between two users, over WebSocket, against running servers.

    python bench/calls_relay.py --caller-url http://127.0.0.1:8001 \
        --callee-url http://127.0.0.1:8002 --caller-token pk_... --callee-token pk_... --calls 200

Each call: offer (caller's node) → `call.offer` on the callee's stream (other node), answer →
`call.answer` on the caller's stream, hangup → `call.hangup` on the callee's stream. Calls run
one after another in a room the script creates; prints p50/p95/max per hop, and --json.
Never run by the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=bench\r\nt=0 0\r\n"


class Stream:
    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.waiting: dict[tuple[str, str], asyncio.Future[float]] = {}
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.socket:
            event = json.loads(raw)
            key = (event["type"], event.get("call", {}).get("id", ""))
            future = self.waiting.pop(key, None)
            if future is not None and not future.done():
                future.set_result(time.perf_counter())

    def expect(self, kind: str, call_id: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[(kind, call_id)] = future
        return future

    async def send(self, frame: dict[str, Any]) -> float:
        started = time.perf_counter()
        await self.socket.send(json.dumps(frame))
        return started


async def open_stream(url: str, token: str) -> Stream:
    ws_url = url.replace("http://", "ws://").replace("https://", "wss://") + "/v1/stream/ws"
    socket = await connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"})
    await socket.recv()  # hello
    return Stream(socket)


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2),
        "max_ms": round(ordered[-1], 2),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=args.caller_url) as http:
        auth = {"Authorization": f"Bearer {args.caller_token}"}
        callee = (
            await http.get("/v1/me", headers={"Authorization": f"Bearer {args.callee_token}"})
        ).json()
        room = (
            await http.post(
                "/v1/conversations",
                headers=auth,
                json={"kind": "room", "title": "calls bench", "members": [callee["name"]]},
            )
        ).json()["id"]
    caller = await open_stream(args.caller_url, args.caller_token)
    receiver = await open_stream(args.callee_url, args.callee_token)
    hops: dict[str, list[float]] = {"offer": [], "answer": [], "hangup": []}
    started = time.perf_counter()
    for _ in range(args.calls):
        call_id = "b" + uuid.uuid4().hex
        offered = receiver.expect("call.offer", call_id)
        sent = await caller.send(
            {"type": "call.offer", "conversation_id": room, "call_id": call_id,
             "device_id": "bench-a", "to_user_id": callee["id"], "sdp": SDP}
        )  # fmt: skip
        hops["offer"].append((await asyncio.wait_for(offered, 10) - sent) * 1000)
        answered = caller.expect("call.answer", call_id)
        sent = await receiver.send(
            {"type": "call.answer", "call_id": call_id, "device_id": "bench-b", "sdp": SDP}
        )
        hops["answer"].append((await asyncio.wait_for(answered, 10) - sent) * 1000)
        hung_up = receiver.expect("call.hangup", call_id)
        sent = await caller.send(
            {"type": "call.hangup", "call_id": call_id, "device_id": "bench-a"}
        )
        hops["hangup"].append((await asyncio.wait_for(hung_up, 10) - sent) * 1000)
    elapsed = time.perf_counter() - started
    for stream in (caller, receiver):
        stream.task.cancel()
        await stream.socket.close()
    return {
        "calls": args.calls,
        "calls_per_s": round(args.calls / elapsed, 1),
        **{hop: summary(samples) for hop, samples in hops.items()},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caller-url", required=True)
    parser.add_argument("--callee-url", required=True)
    parser.add_argument("--caller-token", required=True)
    parser.add_argument("--callee-token", required=True)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    result = asyncio.run(main(parser.parse_args()))
    if parser.parse_args().json:
        print(json.dumps(result))
    else:
        for hop in ("offer", "answer", "hangup"):
            print(f"{hop:7} p50 {result[hop]['p50_ms']:6} ms  p95 {result[hop]['p95_ms']:6} ms  "
                  f"max {result[hop]['max_ms']:6} ms")  # fmt: skip
        print(f"{result['calls']} calls, {result['calls_per_s']} calls/s (one after another)")
