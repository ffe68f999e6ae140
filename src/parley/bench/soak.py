"""`parley bench soak`: a steady mixed load held for minutes, watched for leaks.

Three kinds of client run at once, at a fixed pace, for `--minutes`:

- chat: WebSocket clients in rooms of 10; one pacer sends `--rate` messages/s through them
  (send -> ack latency), and every member reads its stream;
- live chat: website visitors on the Widget API (bootstrap, then send every few seconds, and
  long-poll `/api/widget/poll`); an operator follows the inbox's conversations by long-poll;
- polls: users that only long-poll `/v1/stream/poll`.

Every `--sample-seconds` (10 by default) it records, per server process: resident memory,
open file descriptors and database connections (`parley_db_connections`), and over the last
interval: p50/p95 send->ack, p95 widget send, deliveries, errors. Flat means no leak: the report
compares the last third of the run with the middle third (the first is warm-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from parley.bench.servers import BenchUser, ServerSet, _vm_rss_kb
from parley.bench.stats import Latencies, percentile

ROOM_SIZE = 10
VISITOR_SEND_SECONDS = 5.0
POLL_SECONDS = 10
WIDGET_ORIGIN = "https://bench.example"


@dataclass
class SoakConfig:
    minutes: float
    sample_seconds: float = 10.0
    chat_clients: int = 100
    rate: float = 20.0
    visitors: int = 20
    pollers: int = 20
    body_bytes: int = 100


@dataclass
class Window:
    """What happened since the last sample."""

    ack_ms: Latencies = field(default_factory=Latencies)
    widget_ms: Latencies = field(default_factory=Latencies)
    deliveries: int = 0
    polls: int = 0
    errors: int = 0


@dataclass
class Soak:
    config: SoakConfig
    servers: ServerSet
    samples: list[dict[str, Any]] = field(default_factory=list)
    window: Window = field(default_factory=Window)
    totals: dict[str, int] = field(
        default_factory=lambda: {"sent": 0, "acked": 0, "deliveries": 0, "errors": 0}
    )
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    _pending: dict[str, float] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.window.errors += 1
        self.totals["errors"] += 1
        self.errors_by_kind[kind] += 1


async def run_soak(
    config: SoakConfig,
    servers: ServerSet,
    users: list[BenchUser],
    widget_token: str | None,
    progress: Callable[[str], None],
) -> Soak:
    """Hold the load for `config.minutes` and sample every `config.sample_seconds`."""
    soak = Soak(config, servers)
    chat_users = users[: config.chat_clients]
    pollers = users[config.chat_clients : config.chat_clients + config.pollers]
    operator = users[-1]
    rooms = await _make_rooms(servers.urls[0], chat_users)
    deadline = time.monotonic() + config.minutes * 60
    tasks: list[asyncio.Task[None]] = []
    sockets: list[ClientConnection] = []
    try:
        for index, user in enumerate(chat_users):
            url = servers.urls[index % len(servers.urls)]
            ws = await _open_ws(url, user)
            sockets.append(ws)
            tasks.append(asyncio.create_task(_read_ws(soak, ws)))
        tasks.append(asyncio.create_task(_pace(soak, sockets, rooms, chat_users, deadline)))
        for index, user in enumerate([*pollers, operator]):
            url = servers.urls[index % len(servers.urls)]
            tasks.append(asyncio.create_task(_long_poll(soak, url, user, deadline)))
        if widget_token:
            for index in range(config.visitors):
                url = servers.urls[index % len(servers.urls)]
                tasks.append(asyncio.create_task(_visitor(soak, url, widget_token, deadline)))
        started = time.monotonic()
        next_sample = started
        while time.monotonic() < deadline:
            next_sample += config.sample_seconds
            await asyncio.sleep(max(0.0, next_sample - time.monotonic()))
            sample = await _sample(soak, time.monotonic() - started)
            progress(
                f"t={sample['t']:.0f}s rss={sample['rss_mb']:.1f}MiB fds={sample['fds']} "
                f"db={sample['db_connections']} ack_p95={sample['ack_p95_ms']}ms "
                f"errors={soak.totals['errors']}"
            )
        # The last sends are in flight when the clock runs out: give their acks a moment, so
        # `unacked` counts sends the server lost, not sends cut off by the end of the run.
        for _ in range(100):  # up to 5 s
            if not soak._pending:
                break
            await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ws in sockets:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2)
    return soak


async def _make_rooms(url: str, users: list[BenchUser]) -> dict[int, int]:
    """Rooms of ROOM_SIZE; each user's room id."""
    rooms: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for start in range(0, len(users), ROOM_SIZE):
            members = users[start : start + ROOM_SIZE]
            response = await http.post(
                "/v1/conversations",
                json={"kind": "group", "title": "soak", "members": [u.name for u in members[1:]]},
                headers={"Authorization": f"Bearer {members[0].token}"},
            )
            response.raise_for_status()
            for member in members:
                rooms[member.id] = int(response.json()["id"])
    return rooms


async def _open_ws(url: str, user: BenchUser) -> ClientConnection:
    return await connect(
        url.replace("http://", "ws://", 1) + "/v1/stream/ws",
        additional_headers={"Authorization": f"Bearer {user.token}"},
        max_queue=None,
        open_timeout=30,
        ping_interval=None,
    )


async def _read_ws(soak: Soak, ws: ClientConnection) -> None:
    with contextlib.suppress(WebSocketException, OSError):
        async for raw in ws:
            event = json.loads(raw)
            kind = event["type"]
            if kind == "message":
                soak.window.deliveries += 1
                soak.totals["deliveries"] += 1
            elif kind == "ack":
                sent = soak._pending.pop(event["ref"], None)
                if sent is not None:
                    soak.window.ack_ms.add((time.monotonic() - sent) * 1000)
                    soak.totals["acked"] += 1
            elif kind == "error":
                soak.error(f"ws error frame {event.get('code')}")


async def _pace(
    soak: Soak,
    sockets: list[ClientConnection],
    rooms: dict[int, int],
    users: list[BenchUser],
    deadline: float,
) -> None:
    """`rate` sends per second from a round-robin of the chat clients."""
    interval = 1 / soak.config.rate
    body = "s" * soak.config.body_bytes
    due = time.monotonic()
    for index in itertools.cycle(range(len(sockets))):
        due += interval
        now = time.monotonic()
        if now >= deadline:
            return
        await asyncio.sleep(max(0.0, due - now))
        ref = uuid.uuid4().hex
        soak._pending[ref] = time.monotonic()
        soak.totals["sent"] += 1
        frame = {
            "type": "send",
            "conversation_id": rooms[users[index].id],
            "client_msg_id": ref,
            "body": body,
        }
        try:
            await sockets[index].send(json.dumps(frame))
        except (WebSocketException, OSError) as exc:
            soak._pending.pop(ref, None)
            soak.error(f"ws send: {type(exc).__name__}")


async def _long_poll(soak: Soak, url: str, user: BenchUser, deadline: float) -> None:
    headers = {"Authorization": f"Bearer {user.token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=POLL_SECONDS + 30) as http:
        cursor: str | None = None
        while time.monotonic() < deadline:
            params: dict[str, Any] = {"timeout": POLL_SECONDS}
            if cursor is not None:
                params["cursor"] = cursor
            try:
                response = await http.get("/v1/stream/poll", params=params)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                soak.error(f"poll: {_describe(exc)}")
                await asyncio.sleep(1)
                continue
            body = response.json()
            cursor = body["cursor"]
            soak.window.polls += 1


async def _visitor(soak: Soak, url: str, widget_token: str, deadline: float) -> None:
    """Bootstrap, then send every few seconds while long-polling the conversation."""
    headers = {"Origin": WIDGET_ORIGIN}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        try:
            answer = await http.post(
                "/api/widget/bootstrap",
                json={"widget_token": widget_token, "page_url": f"{WIDGET_ORIGIN}/soak"},
            )
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            soak.error(f"widget bootstrap: {_describe(exc)}")
            return
        session = answer.json()["session"]
        poller = asyncio.create_task(_widget_poll(soak, http, session, deadline))
        try:
            await asyncio.sleep(random.uniform(0, VISITOR_SEND_SECONDS))
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    response = await http.post(
                        "/api/widget/messages",
                        json={
                            "session": session,
                            "client_msg_id": uuid.uuid4().hex,
                            "body": "a question about my order",
                        },
                    )
                    response.raise_for_status()
                    soak.window.widget_ms.add((time.monotonic() - started) * 1000)
                except httpx.HTTPError as exc:
                    soak.error(f"widget send: {_describe(exc)}")
                await asyncio.sleep(VISITOR_SEND_SECONDS)
        finally:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)


async def _widget_poll(soak: Soak, http: httpx.AsyncClient, session: str, deadline: float) -> None:
    cursor = ""
    while time.monotonic() < deadline:
        params = {"session": session, "timeout": POLL_SECONDS}
        if cursor:
            params["cursor"] = cursor
        try:
            response = await http.get("/api/widget/poll", params=params)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            soak.error(f"widget poll: {_describe(exc)}")
            await asyncio.sleep(1)
            continue
        cursor = str(response.json()["cursor"])
        soak.window.polls += 1


async def _sample(soak: Soak, t: float) -> dict[str, Any]:
    window, soak.window = soak.window, Window()
    pids = soak.servers.pids
    db = await _db_connections(soak.servers.urls)
    acks = sorted(window.ack_ms.values)
    widget = sorted(window.widget_ms.values)
    sample = {
        "t": round(t, 1),
        "rss_mb": round(sum(_vm_rss_kb(pid) for pid in pids) / 1024, 1),
        "fds": sum(_open_fds(pid) for pid in pids),
        "db_connections": db,
        "ack_p50_ms": _ms(percentile(acks, 50)),
        "ack_p95_ms": _ms(percentile(acks, 95)),
        "widget_send_p95_ms": _ms(percentile(widget, 95)),
        "acks": len(acks),
        "deliveries": window.deliveries,
        "polls": window.polls,
        "errors": window.errors,
        "unacked": len(soak._pending),
    }
    soak.samples.append(sample)
    return sample


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return str(exc.response.status_code)
    return type(exc).__name__


def _ms(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 1)


def _open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


async def _db_connections(urls: list[str]) -> int:
    """Open database connections, as the servers' own pools count them."""
    total = 0
    async with httpx.AsyncClient(timeout=10) as http:
        for url in urls:
            try:
                text = (await http.get(f"{url}/metrics")).text
            except httpx.HTTPError:
                continue
            for line in text.splitlines():
                if line.startswith('parley_db_connections{state="open"}'):
                    total += int(float(line.split()[-1]))
    return total


def create_widget_inbox(env: dict[str, str], operator: str) -> str:
    """An inbox for the soak's visitors (via `parley inbox add`); its widget token."""
    done = subprocess.run(  # noqa: S603
        [
            *(sys.executable, "-m", "parley", "inbox", "add", f"Soak {uuid.uuid4().hex[:6]}"),
            *("--domain", "bench.example", "--operator", operator),
        ],
        env=env,
        cwd=env.get("PARLEY_DATA_DIR", "."),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"creating the inbox failed:\n{done.stdout[-2000:]}{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


# -- the report ----------------------------------------------------------------------------------

TRACKED = ("rss_mb", "fds", "db_connections", "ack_p95_ms")


def verdict(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Each tracked figure in the middle and last thirds; growth past 10 % (and a floor) is
    not flat."""
    thirds = max(1, len(samples) // 3)
    middle = samples[thirds : 2 * thirds] or samples
    last = samples[2 * thirds :] or samples
    out: dict[str, Any] = {}
    floors = {"rss_mb": 5.0, "fds": 5, "db_connections": 2, "ack_p95_ms": 20.0}
    for name in TRACKED:
        a = _mean([s[name] for s in middle])
        b = _mean([s[name] for s in last])
        growth = None if a is None or b is None else round(b - a, 2)
        flat = growth is None or growth <= max(floors[name], 0.1 * (a or 0))
        out[name] = {"middle": a, "last": b, "growth": growth, "flat": flat}
    out["flat"] = all(v["flat"] for v in out.values() if isinstance(v, dict))
    return out


def _mean(values: list[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return round(sum(present) / len(present), 2) if present else None


def document(soak: Soak, machine: dict[str, Any]) -> dict[str, Any]:
    return {
        "scenario": "soak",
        "config": vars(soak.config),
        "machine": machine,
        "servers": {"mode": soak.servers.mode, "processes": len(soak.servers.urls)},
        "totals": soak.totals,
        "errors": dict(soak.errors_by_kind),
        "verdict": verdict(soak.samples),
        "samples": soak.samples,
    }


def write_chart(doc: dict[str, Any], path: Path) -> Path:
    """Four panels over time: memory, descriptors, database connections, latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = doc["samples"]
    minutes = [s["t"] / 60 for s in samples]
    figure, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex=True)
    panels = [
        ("rss_mb", "server RSS (MiB)"),
        ("fds", "open file descriptors"),
        ("db_connections", "database connections (pool)"),
        ("ack_p95_ms", "send→ack p95 (ms), per 10 s"),
    ]
    for axis, (name, title) in zip(axes.flat, panels, strict=True):
        values = [math.nan if s[name] is None else s[name] for s in samples]
        axis.plot(minutes, values, marker=".", linewidth=1)
        if name == "ack_p95_ms":
            p50 = [math.nan if s["ack_p50_ms"] is None else s["ack_p50_ms"] for s in samples]
            axis.plot(minutes, p50, linewidth=1, label="p50")
            axis.legend(["p95", "p50"], loc="upper right")
        axis.set_title(title, fontsize=10)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    for axis in axes[1]:
        axis.set_xlabel("minutes")
    config = doc["config"]
    figure.suptitle(
        f"parley bench soak: {config['minutes']:g} min, {config['chat_clients']} WS clients at "
        f"{config['rate']:g} msg/s, {config['visitors']} widget visitors, "
        f"{config['pollers']} long-pollers",
        fontsize=11,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
