"""The four load shapes and the steps they are made of.

- `rooms`:  C clients in rooms of K members; S of them send, R messages/s in total, for D s.
- `direct`: the same with 1:1 conversations (K = 2).
- `idle`:   C connections that only hold their stream open; memory per connection.
- `ramp`:   `rooms` at rising rates until a step is not sustainable: the sustainable rate.

A step offers a fixed rate from a single pacer (like `baselines/ws_fanout.py`, so the two
compare), then waits up to `drain` seconds for the last acks and deliveries. A step is
sustainable when >= 99.9 % of deliveries arrived, nothing failed, and p95 send->delivered stays
under the limit (1 s by default; `ws_fanout.py` uses 100 ms).
Memory is read before connecting, with everyone connected, and after each round has
disconnected and settled; with `--rounds 2+` the growth from round to round shows a leak.
"""

from __future__ import annotations

import asyncio
import math
import resource
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from parley.bench.fleet import Fleet
from parley.bench.servers import P0_REPORTED, BenchUser, ServerSet
from parley.bench.stats import Series

SCENARIOS = ("rooms", "direct", "idle", "ramp")
DEFAULT_RAMP_RATES = (250, 500, 1000, 1500, 2000, 3000, 4000, 6000, 8000)
SAMPLE_SECONDS = 0.5
COMPLETE = 0.999

Progress = Callable[[str], None]


@dataclass
class BenchConfig:
    scenario: str
    clients: int
    room_size: int = 10
    senders: int = 0  # 0: every client sends
    rate: float = 1000
    rates: list[float] = field(default_factory=lambda: list(DEFAULT_RAMP_RATES))
    duration: float = 10
    body_bytes: int = 100
    rounds: int = 1
    drain_seconds: float = 10
    settle_seconds: float = 3
    connect_concurrency: int = 64
    max_p95_ms: float = 1000
    max_seconds: float = 300
    deflate: bool = False

    @property
    def members_per_conversation(self) -> int:
        return 2 if self.scenario == "direct" else self.room_size

    def step_rates(self) -> list[float]:
        if self.scenario == "ramp":
            return list(self.rates)
        if self.scenario == "idle":
            return []
        return [self.rate]


@dataclass
class Run:
    """Everything one `parley bench` run measured, ready for the table, JSON and charts."""

    config: BenchConfig
    servers: ServerSet
    steps: list[dict[str, Any]] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    series: Series = field(default_factory=Series)
    memory: dict[str, Any] = field(default_factory=dict)
    connections: dict[str, Any] = field(default_factory=dict)
    p0: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    server_counters: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    stopped_early: str = ""


async def run_scenario(
    config: BenchConfig, servers: ServerSet, users: list[BenchUser], progress: Progress
) -> Run:
    """Set up conversations, then run `config.rounds` rounds of connect → load → disconnect."""
    run = Run(config, servers)
    deadline = time.monotonic() + config.max_seconds
    conversation_of: dict[int, int] = {}
    members: dict[int, int] = {}
    if config.scenario != "idle":
        progress(f"creating conversations of {config.members_per_conversation}")
        conversation_of, members = await create_conversations(
            servers.urls[0], users, config.members_per_conversation
        )
    fleet = Fleet(
        users,
        servers.urls,
        conversation_of=conversation_of,
        members=members,
        deflate=config.deflate,
    )
    counters_before = await servers.scrape()
    run.memory["rss_before_mb"] = await settled_rss(servers)
    sampler = asyncio.create_task(_sample(run, fleet, progress))
    try:
        for number in range(1, config.rounds + 1):
            if time.monotonic() > deadline:
                run.stopped_early = "--max-seconds reached"
                break
            await _round(run, fleet, number, deadline, progress)
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        await fleet.close_all()
    counters_after = await servers.scrape()
    _finish(run, fleet, counters_before, counters_after)
    return run


async def _round(run: Run, fleet: Fleet, number: int, deadline: float, progress: Progress) -> None:
    config = run.config
    round_info: dict[str, Any] = {"round": number}
    progress(f"round {number}: connecting {len(fleet.clients)} clients")
    started = time.monotonic()
    await fleet.connect_all(config.connect_concurrency, deadline)
    round_info["connect_seconds"] = round(time.monotonic() - started, 2)
    round_info["connected"] = fleet.connected
    await asyncio.sleep(1)  # let presence fan-out of the connects pass before measuring
    round_info["rss_connected_mb"] = await settled_rss(run.servers)
    if config.scenario == "idle":
        progress(f"round {number}: holding {fleet.connected} connections")
        await _hold(config.duration, deadline)
    senders = _senders(fleet, config.senders)
    for rate in config.step_rates():
        if time.monotonic() > deadline:
            run.stopped_early = "--max-seconds reached"
            break
        tag = f"{secrets.token_hex(3)}.{number}.{int(rate)}"
        step = await run_step(run, fleet, senders, rate, tag, deadline)
        step["round"] = number
        run.steps.append(step)
        if not step["sustainable"] and config.scenario == "ramp":
            break
        await asyncio.sleep(1)
    round_info["rss_loaded_mb"] = await settled_rss(run.servers, seconds=0.5)
    await fleet.close_all()
    progress(f"round {number}: disconnected; settling {config.settle_seconds:g} s")
    await asyncio.sleep(config.settle_seconds)
    round_info["rss_after_mb"] = await settled_rss(run.servers)
    run.rounds.append(round_info)


async def _hold(seconds: float, deadline: float) -> None:
    await asyncio.sleep(max(0.0, min(seconds, deadline - time.monotonic())))


def _senders(fleet: Fleet, count: int) -> list[Any]:
    clients = [c for c in fleet.clients if c.ws is not None and c.conversation_id is not None]
    if not clients:
        return []
    count = len(clients) if count <= 0 else min(count, len(clients))
    return [clients[(j * len(clients)) // count] for j in range(count)]


async def run_step(
    run: Run, fleet: Fleet, senders: list[Any], rate: float, tag: str, deadline: float
) -> dict[str, Any]:
    """Offer `rate` messages/s for the configured duration, then drain and summarize."""
    config = run.config
    body = "x" * config.body_bytes
    total = int(rate * config.duration)
    interval_ns = 1e9 / rate
    cpu0, usage0 = run.servers.cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic_ns()
    behind = 0
    for i in range(total if senders else 0):
        target = start + int(i * interval_ns)
        now = time.monotonic_ns()
        if target > now:
            await asyncio.sleep((target - now) / 1e9)
        else:
            behind = max(behind, now - target)
            if i % 32 == 0:
                await asyncio.sleep(0)  # a pacer that never yields would starve the readers
        # A prime stride spreads consecutive sends over the rooms.
        await fleet.send(senders[(i * 7919) % len(senders)], f"{tag}.{i}", body, target)
        if i % 256 == 0 and time.monotonic() > deadline:
            run.stopped_early = "--max-seconds reached"
            break
    send_end = time.monotonic_ns()
    tally = fleet.tally
    drain_until = time.monotonic() + config.drain_seconds
    while time.monotonic() < drain_until and (  # noqa: ASYNC110 - polling counters is the point
        tally.acks + sum(tally.errors.values()) < tally.sent
        or fleet.received_deliveries() < fleet.expected_deliveries()
    ):
        await asyncio.sleep(0.05)
    end = time.monotonic_ns()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = run.servers.cpu_seconds() - cpu0
    expected, got = fleet.expected_deliveries(), fleet.received_deliveries()
    complete = got >= expected * COMPLETE
    send_seconds = max(1e-9, (send_end - start) / 1e9)
    wall = (end - start) / 1e9
    delivered = tally.deliver_ms.summary()
    step: dict[str, Any] = {
        "offered_rate": rate,
        "duration_s": round(send_seconds, 2),
        "sent": tally.sent,
        "acked": tally.acks,
        "send_failures": tally.send_failures,
        "persisted_per_s": round(tally.acks / _since(start, tally.last_ack_ns), 1),
        "expected_deliveries": expected,
        "deliveries": got,
        # As ws_fanout.py counts it: over the sending time when (nearly) all arrived.
        "deliveries_per_s": round(got / (send_seconds if complete else wall), 1),
        "ack_ms": tally.ack_ms.summary(),
        "delivered_ms": delivered,
        "delivered_all_ms": tally.deliver_all_ms.summary(),
        "sender_max_behind_ms": round(behind / 1e6, 1),
        "server_cpu_cores": round(server_cpu / wall, 2),
        # Less sensitive to a busy machine than latency: server CPU per acked message.
        "server_cpu_ms_per_message": round(server_cpu * 1000 / max(1, tally.acks), 3),
        "client_cpu_cores": round(
            (usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime) / wall, 2
        ),
        "errors": dict(tally.errors),
    }
    p95 = float(delivered["p95"])
    step["sustainable"] = bool(
        tally.sent
        and complete
        and not tally.errors
        and not tally.send_failures
        and tally.acks >= tally.sent
        and not math.isnan(p95)
        and p95 <= config.max_p95_ms
    )
    shortfalls = fleet.settle_step()
    step["errors"].update({k: v for k, v in shortfalls.items() if v})
    if tally.send_failures:
        step["errors"]["send_failures"] = tally.send_failures
    for code, count in step["errors"].items():
        run.errors[code] = run.errors.get(code, 0) + count
    return step


def _since(start_ns: int, end_ns: int) -> float:
    return max(1e-9, (end_ns - start_ns) / 1e9) if end_ns else math.inf


async def settled_rss(servers: ServerSet, seconds: float = 1.0) -> float:
    """Total resident memory of the servers, MiB, the median of a few reads over `seconds`.

    NaN (null in JSON) when the servers' process ids are unknown (`--url` without `--server-pid`).
    """
    if not servers.pids:
        return math.nan
    reads = []
    for _ in range(5):
        reads.append(sum(servers.rss_mb()))
        await asyncio.sleep(seconds / 5)
    return round(sorted(reads)[len(reads) // 2], 1)


async def _sample(run: Run, fleet: Fleet, progress: Progress) -> None:
    last_deliveries = last_acks = 0
    last_tally = fleet.tally
    while True:
        await asyncio.sleep(SAMPLE_SECONDS)
        tally = fleet.tally
        if tally is not last_tally:  # a new step: counters restarted
            last_deliveries = last_acks = 0
            last_tally = tally
        rss = run.servers.rss_mb()
        t = time.monotonic() - run.started
        deliveries_per_s = (tally.deliveries - last_deliveries) / SAMPLE_SECONDS
        acks_per_s = (tally.acks - last_acks) / SAMPLE_SECONDS
        last_deliveries, last_acks = tally.deliveries, tally.acks
        values = {
            "deliveries_per_s": deliveries_per_s,
            "acks_per_s": acks_per_s,
            "connections": float(fleet.connected),
        }
        for i, mb in enumerate(rss):
            values[f"rss_mb_{i + 1}"] = mb
        run.series.add(t, **values)
        total = sum(mb for mb in rss if not math.isnan(mb))
        run.memory["rss_peak_mb"] = round(max(run.memory.get("rss_peak_mb", 0.0), total), 1)
        p95 = tally.deliver_ms.recent_p95()
        progress(
            f"t={t:6.1f}s conns={fleet.connected:>6} sent={tally.sent:>7} acked={tally.acks:>7} "
            f"deliv/s={deliveries_per_s:>8.0f} p95={_ms(p95)} rss={sum(rss):7.1f}MiB "
            f"P0={fleet.violations.total()}"
        )


def _ms(value: float) -> str:
    return "    -   " if math.isnan(value) else f"{value:7.1f}ms"


def _finish(run: Run, fleet: Fleet, before: dict[str, float], after: dict[str, float]) -> None:
    run.server_counters = {
        key: after.get(key, 0.0) - before.get(key, 0.0) for key in sorted({*before, *after})
    }
    reported = {
        name: int(run.server_counters.get(f"parley_client_reported_total{{{name}}}", 0))
        for name in P0_REPORTED
    }
    reported["server_read_rollback_detected"] = int(
        run.server_counters.get("parley_read_rollback_detected_total", 0)
    )
    client = vars(fleet.violations).copy()
    run.p0 = {
        "client": client,
        "server": reported,
        "total": sum(client.values()) + sum(reported.values()),
    }
    slow = int(run.server_counters.get("parley_slow_consumer_disconnects_total", 0))
    if slow:
        run.errors["slow_consumer_disconnects"] = slow
    for reason, count in fleet.connect_failures.items():
        run.errors[f"connect:{reason}"] = count
    run.errors = {k: v for k, v in run.errors.items() if v}
    held = max((r["connected"] for r in run.rounds), default=0)
    run.connections = {
        "clients": len(fleet.clients),
        "held": held,
        "connect_ms": fleet.connect_ms.summary(),
    }
    before_mb = run.memory["rss_before_mb"]
    if run.rounds:
        first = run.rounds[0]
        last = run.rounds[-1]
        per_conn = (first["rss_connected_mb"] - before_mb) * 1024 / max(1, first["connected"])
        run.memory.update(
            rss_connected_mb=first["rss_connected_mb"],
            rss_peak_mb=max(run.memory.get("rss_peak_mb", 0.0), first["rss_connected_mb"])
            if run.servers.pids
            else math.nan,
            rss_after_mb=last["rss_after_mb"],
            per_connection_kib=round(per_conn, 1),
            after_minus_before_mb=round(last["rss_after_mb"] - before_mb, 1),
            growth_between_rounds_mb=round(last["rss_after_mb"] - first["rss_after_mb"], 1)
            if len(run.rounds) > 1
            else None,
        )


async def create_conversations(
    url: str, users: list[BenchUser], size: int
) -> tuple[dict[int, int], dict[int, int]]:
    """Group users into conversations of `size` (direct when 2) through the REST API.

    Returns each user's conversation and each conversation's member count.
    """
    groups = [users[i : i + size] for i in range(0, len(users), size)]
    conversation_of: dict[int, int] = {}
    members: dict[int, int] = {}
    gate = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def create(group: list[BenchUser]) -> None:
            if len(group) < 2:
                return  # a lone leftover user has no one to talk to
            kind = "direct" if size == 2 else "room"
            async with gate:
                response = await http.post(
                    "/v1/conversations",
                    json={
                        "kind": kind,
                        "title": f"bench {group[0].name}",
                        "members": [u.name for u in group[1:]],
                    },
                    headers={"Authorization": f"Bearer {group[0].token}"},
                )
            response.raise_for_status()
            cid = int(response.json()["id"])
            members[cid] = len(group)
            for user in group:
                conversation_of[user.id] = cid

        await asyncio.gather(*(create(g) for g in groups))
    return conversation_of, members
