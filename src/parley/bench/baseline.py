"""The yardstick: a minimal Starlette WebSocket broadcast, measured the way Parley is.

`parley bench ... --baseline` runs this right before the Parley run, on the same box, so the
ratio rows (Parley / baseline) cancel most of the machine's noise. The server is the smallest
thing that does the job: every text frame a client sends goes, with a naive `send_text` loop, to
every member of its room (sender included), nothing stored, nothing checked. It is started as a
subprocess (`python -m parley.bench.baseline --port P`) under uvicorn with uvloop and httptools,
like `parley serve`, and stopped by its process id.

The load is Parley's: the same connections, rooms, pacer, rates, step length and sustainability
rule (>= 99.9 % delivered, delivered p95 at or under the limit); each frame carries its scheduled
send time, so latency counts from the moment the send was due.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from parley.bench.scenarios import COMPLETE, BenchConfig, Progress, settled_rss
from parley.bench.servers import ServerSet, free_port
from parley.bench.stats import Latencies

# The ratio rows: (figure, key in both summaries, target ratio, higher is better).
RATIO_ROWS: tuple[tuple[str, str, float, bool], ...] = (
    ("deliveries/s (best sustainable step)", "deliveries_per_s", 0.5, True),
    ("server CPU ms per message", "server_cpu_ms_per_message", 1.5, False),
    ("memory per idle WebSocket (KiB)", "rss_per_connection_kib", 1.2, False),
)


def serve(port: int) -> None:
    """Run the broadcast server in this process until it is terminated."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    rooms: dict[str, set[WebSocket]] = {}

    async def endpoint(websocket: WebSocket) -> None:
        room = websocket.query_params["room"]
        await websocket.accept()
        members = rooms.setdefault(room, set())
        members.add(websocket)
        try:
            while True:
                text = await websocket.receive_text()
                for member in list(members):
                    with contextlib.suppress(Exception):
                        await member.send_text(text)
        except WebSocketDisconnect:
            pass
        finally:
            members.discard(websocket)

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        backlog=2048,
        ws_per_message_deflate=False,
    )


def start_server() -> tuple[ServerSet, subprocess.Popen[bytes]]:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "parley.bench.baseline", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return ServerSet(urls=[f"ws://127.0.0.1:{port}"], pids=[process.pid], mode="baseline"), process


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@dataclass
class _Counts:
    delivered: int = 0
    latency: Latencies = field(default_factory=Latencies)


async def run_baseline(config: BenchConfig, progress: Progress) -> dict[str, Any]:
    """Start the broadcast server, load it like `config` loads Parley, and return its figures."""
    servers, process = start_server()
    try:
        return await _measure(config, servers, process, progress)
    finally:
        stop_server(process)


async def _measure(
    config: BenchConfig,
    servers: ServerSet,
    process: subprocess.Popen[bytes],
    progress: Progress,
) -> dict[str, Any]:
    url = servers.urls[0]
    await _wait_listening(url, process)
    rss_before = await settled_rss(servers)
    size = config.members_per_conversation
    counts = _Counts()
    gate = asyncio.Semaphore(config.connect_concurrency)
    progress(f"baseline: connecting {config.clients} clients")

    async def open_one(i: int) -> ClientConnection | None:
        async with gate:
            with contextlib.suppress(OSError, TimeoutError, WebSocketException):
                return await connect(
                    f"{url}/ws?room={i // size}",
                    compression="deflate" if config.deflate else None,
                    max_queue=None,
                    open_timeout=60,
                    ping_interval=None,
                    close_timeout=2,
                )
        return None

    opened = await asyncio.gather(*(open_one(i) for i in range(config.clients)))
    conns = [ws for ws in opened if ws is not None]
    readers = [asyncio.create_task(_read(ws, counts)) for ws in conns]
    # Rooms as Parley's bench makes them: a lone leftover client has no room.
    room_of = [i // size for i in range(config.clients)]
    members = {room: room_of.count(room) for room in set(room_of)}
    senders = [ws for i, ws in enumerate(opened) if ws is not None and members[room_of[i]] > 1]
    reach = [members[room_of[i]] for i, ws in enumerate(opened) if ws is not None]
    reach = [n for n in reach if n > 1]
    try:
        await asyncio.sleep(1)
        rss_connected = await settled_rss(servers)
        if config.scenario == "idle":
            await asyncio.sleep(min(config.duration, 5))
        steps = []
        for rate in config.step_rates():
            progress(f"baseline: {rate:g} msg/s")
            step = await _step(config, servers, senders, reach, counts, rate)
            steps.append(step)
            if not step["sustainable"]:
                break
            await asyncio.sleep(1)
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    per_conn = (rss_connected - rss_before) * 1024 / max(1, len(conns))
    out: dict[str, Any] = {
        "server": "minimal Starlette broadcast (uvicorn, uvloop, httptools, naive send loop)",
        "connections_held": len(conns),
        "rss_before_mb": rss_before,
        "rss_connected_mb": rss_connected,
        "rss_per_connection_kib": round(per_conn, 1),
        "steps": steps,
    }
    sustainable = [s for s in steps if s["sustainable"]]
    if steps:
        best = max(sustainable, key=lambda s: s["offered_rate"]) if sustainable else steps[-1]
        out.update(
            sustainable_rate=best["offered_rate"] if sustainable else None,
            # A ramp whose every step held never found the baseline's ceiling.
            ceiling_reached=len(sustainable) < len(steps),
            deliveries_per_s=best["deliveries_per_s"],
            delivered_p95_ms=best["delivered_ms"]["p95"],
            server_cpu_ms_per_message=best["server_cpu_ms_per_message"],
        )
    return out


async def _wait_listening(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the baseline server exited early")
        try:
            ws = await connect(f"{url}/ws?room=probe", open_timeout=1)
        except (OSError, TimeoutError, WebSocketException):
            await asyncio.sleep(0.1)
            continue
        await ws.close()
        return
    raise RuntimeError("the baseline server was not listening in 30 s")


async def _read(ws: ClientConnection, counts: _Counts) -> None:
    with contextlib.suppress(WebSocketException):
        async for frame in ws:
            now = time.monotonic_ns()
            counts.delivered += 1
            counts.latency.add((now - int(frame[:19])) / 1e6)


async def _step(
    config: BenchConfig,
    servers: ServerSet,
    senders: list[ClientConnection],
    reach: list[int],
    counts: _Counts,
    rate: float,
) -> dict[str, Any]:
    counts.delivered = 0
    counts.latency = Latencies()
    pad = "x" * config.body_bytes
    total = int(rate * config.duration) if senders else 0
    interval_ns = 1e9 / rate
    expected = 0
    cpu0 = servers.cpu_seconds()
    start = time.monotonic_ns()
    for i in range(total):
        target = start + int(i * interval_ns)
        now = time.monotonic_ns()
        if target > now:
            await asyncio.sleep((target - now) / 1e9)
        elif i % 32 == 0:
            await asyncio.sleep(0)
        pick = (i * 7919) % len(senders)
        expected += reach[pick]
        with contextlib.suppress(WebSocketException):
            await senders[pick].send(f"{target:019d} {pad}")
    send_end = time.monotonic_ns()
    drain_until = time.monotonic() + config.drain_seconds
    while counts.delivered < expected and time.monotonic() < drain_until:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    end = time.monotonic_ns()
    cpu = servers.cpu_seconds() - cpu0
    got = counts.delivered
    complete = got >= expected * COMPLETE
    send_seconds = max(1e-9, (send_end - start) / 1e9)
    wall = max(1e-9, (end - start) / 1e9)
    delivered = counts.latency.summary()
    p95 = float(delivered["p95"])
    return {
        "offered_rate": rate,
        "sent": total,
        "expected_deliveries": expected,
        "deliveries": got,
        "deliveries_per_s": round(got / (send_seconds if complete else wall), 1),
        "delivered_ms": delivered,
        "server_cpu_cores": round(cpu / wall, 2),
        "server_cpu_ms_per_message": round(cpu * 1000 / max(1, total), 3),
        "sustainable": bool(
            total and complete and not math.isnan(p95) and p95 <= config.max_p95_ms
        ),
    }


def ratios(
    summary: dict[str, Any], steps: list[dict[str, Any]], baseline: dict[str, Any]
) -> list[dict[str, Any]]:
    """The issue's ratio rows: Parley's figure over the baseline's, beside the target.

    CPU per message is compared at the highest rate both sustained (the cost per message
    depends on the rate: batching); the other figures are each side's best.
    """
    theirs_by_key = dict(baseline)
    ours_by_key = dict(summary)
    common = _highest_common_rate(steps, baseline.get("steps", []))
    if common is not None:
        ours_by_key["server_cpu_ms_per_message"] = common[0]["server_cpu_ms_per_message"]
        theirs_by_key["server_cpu_ms_per_message"] = common[1]["server_cpu_ms_per_message"]
    rows = []
    for figure, key, target, higher_is_better in RATIO_ROWS:
        ours, theirs = ours_by_key.get(key), theirs_by_key.get(key)
        ratio = None
        if _number(ours) and _number(theirs) and theirs:
            ratio = round(ours / theirs, 2)
        met = None if ratio is None else (ratio >= target if higher_is_better else ratio <= target)
        if (
            key == "deliveries_per_s"
            and ratio is not None
            and not (summary.get("sustainable") and baseline.get("sustainable_rate") is not None)
        ):
            # Each side's last step, not a ceiling: no verdict from that.
            figure, met = "deliveries/s (last step: a side sustained none)", None
        if key == "server_cpu_ms_per_message" and common is not None:
            figure = f"{figure} at {common[0]['offered_rate']:g}/s"
        rows.append(
            {
                "figure": figure,
                "parley": ours,
                "baseline": theirs,
                "ratio": ratio,
                "target": f"{'>=' if higher_is_better else '<='} {target:g}",
                "met": met,
            }
        )
    return rows


def _highest_common_rate(
    ours: list[dict[str, Any]], theirs: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    held = {s["offered_rate"]: s for s in theirs if s["sustainable"]}
    both = [
        (s, held[s["offered_rate"]]) for s in ours if s["sustainable"] and s["offered_rate"] in held
    ]
    return max(both, key=lambda pair: pair[0]["offered_rate"]) if both else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not math.isnan(value)


def main() -> None:
    parser = argparse.ArgumentParser(description="The minimal Starlette broadcast server.")
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()
