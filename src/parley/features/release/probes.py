"""Probes against a live deployment, as its clients see it: readiness, delivery over WebSocket,
SSE and long-poll, receipts, attachments, reconnect with resume, the real client's fallback,
and a short canary burst whose latencies and client reports feed the latency and gate checks.

Two smoke accounts drive them (a sender and a receiver), in the deployment's one probe
conversation (`probe.PROBE_TITLE`). Each probe returns a `CheckResult` with its evidence; an
exception becomes a red result in `gonogo`, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from parley.clients.python import ParleyClient
from parley.features.release.probe import PROBE_TITLE
from parley.features.release.relay import HttpRelay, serving
from parley.features.release.stats import percentile
from parley.settings import Settings

Event = dict[str, Any]
FALLBACK_LIMIT_MS = 3000.0  # seed 000: fallback ≤ 3 s
P95_LIMIT_MS = 1000.0  # seed 000: p95 ≤ 1 s
BURST_MESSAGES = 30
WAIT_SECONDS = 10.0


class Status(StrEnum):
    PASS = "PASS"  # noqa: S105 - a result, not a password
    FAIL = "FAIL"
    WARN = "WARN"  # recorded, does not block GO
    SKIP = "SKIP"  # could not run: something it needs failed first (blocks GO)
    EXCLUDED = "EXCLUDED"  # left out on purpose, with a reason (does not block GO)


@dataclass
class CheckResult:
    name: str
    title: str
    status: Status
    evidence: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in (Status.PASS, Status.WARN, Status.EXCLUDED)


def result(name: str, title: str, ok: bool, evidence: str, **values: Any) -> CheckResult:
    return CheckResult(name, title, Status.PASS if ok else Status.FAIL, evidence, values)


class Listener:
    """Every event one stream connection received, and a way to wait for one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def take(self, event: Event) -> None:
        self.events.append(event)
        self._arrived.set()

    async def wait_for(
        self, matches: Callable[[Event], bool], timeout: float = WAIT_SECONDS
    ) -> Event:
        deadline = time.monotonic() + timeout
        while True:
            found = next((e for e in self.events if matches(e)), None)
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"nothing matching arrived within {timeout:.0f} s")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class WsListener(Listener):
    def __init__(self, socket: ClientConnection) -> None:
        super().__init__()
        self.socket = socket
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.socket:
                self.take(json.loads(raw))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.socket.close(), 5)
        await super().close()


class SseListener(Listener):
    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        super().__init__()
        self._task = asyncio.create_task(self._read(http, headers))

    async def _read(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        data: list[str] = []
        async with http.stream("GET", "/v1/stream/sse", headers=headers, timeout=None) as response:
            if response.status_code != 200:
                self.take({"type": "refused", "status": response.status_code})
                return
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    self.take(json.loads("\n".join(data)))
                    data = []


@dataclass
class Written:
    """What this run stored in the deployment (the record lists it)."""

    messages: int = 0
    attachments: list[str] = field(default_factory=list)
    reports: int = 0


class Deployment:
    """One deployment reached as two smoke accounts: `sender` writes, `receiver` listens."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        sender_token: str,
        receiver_token: str,
        admin_token: str = "",
    ) -> None:
        self.http = http
        self.sender_token, self.receiver_token = sender_token, receiver_token
        self.sender = {"Authorization": f"Bearer {sender_token}"}
        self.receiver = {"Authorization": f"Bearer {receiver_token}"}
        self.admin = {"Authorization": f"Bearer {admin_token}"} if admin_token else None
        self.conversation_id = 0
        self.listeners: list[Listener] = []
        self.written = Written()
        self.trimmed: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return str(self.http.base_url).rstrip("/")

    @property
    def ws_url(self) -> str:
        return self.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)

    async def call(self, method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        response = await self.http.request(method, path, headers=headers, **kw)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json() if response.content else None

    async def open_ws(self, headers: dict[str, str], query: str = "") -> WsListener:
        socket = await connect(
            self.ws_url + "/v1/stream/ws" + query, additional_headers=headers, open_timeout=5
        )
        listener = WsListener(socket)
        self.listeners.append(listener)
        await listener.wait_for(lambda e: e["type"] == "hello")
        return listener

    def open_sse(self, headers: dict[str, str]) -> SseListener:
        listener = SseListener(self.http, headers)
        self.listeners.append(listener)
        return listener

    def client(self, token: str, base_url: str | None = None) -> ParleyClient:
        """The real Python client, as an app would run it (WebSocket first, with fallback)."""
        return ParleyClient(base_url or self.url, token, load_conversations=False)

    async def send(self, body: str, **extra: Any) -> dict[str, Any]:
        sent: dict[str, Any] = await self.call(
            "POST",
            f"/v1/conversations/{self.conversation_id}/messages",
            self.sender,
            json={"client_msg_id": "gonogo-" + secrets.token_hex(8), "body": body, **extra},
        )
        self.written.messages += 1
        return sent

    async def close(self) -> None:
        for listener in self.listeners:
            await listener.close()


def _is_message(sent: dict[str, Any]) -> Callable[[Event], bool]:
    return lambda e: e["type"] == "message" and e["message"]["id"] == sent["id"]


# -- deployment and accounts ----------------------------------------------------------------------


async def check_health(d: Deployment) -> CheckResult:
    response = await d.http.get("/readyz")
    json_body = response.headers.get("content-type", "").startswith("application/json")
    body = response.json() if json_body else {}
    checks = body.get("checks", {})
    ok = response.status_code == 200 and checks.get("database") == "ok"
    # A degraded bus or default branch is its own check's finding (redis, inbox_routing).
    return result(
        "health",
        "Readiness (/readyz: the database answers)",
        ok,
        f"HTTP {response.status_code}, status {body.get('status')}: {json.dumps(checks)}",
    )


async def check_accounts(d: Deployment) -> CheckResult:
    """Both smoke accounts sign in; the probe conversation is found (or made) and shared."""
    me = await d.call("GET", "/v1/me", d.sender)
    peer = await d.call("GET", "/v1/me", d.receiver)
    title = "Smoke accounts sign in and share the probe conversation"
    if me["id"] == peer["id"]:
        return result("accounts", title, False, f"--token and --peer-token are both {me['name']}")
    listed = (await d.call("GET", "/v1/conversations", d.sender))["conversations"]
    found = next(
        (c for c in listed if c["title"] == PROBE_TITLE and c["created_by"] == me["id"]), None
    )
    if found is None:
        created = await d.call(
            "POST",
            "/v1/conversations",
            d.sender,
            json={"kind": "group", "title": PROBE_TITLE, "members": [peer["name"]]},
        )
        d.conversation_id, how = int(created["id"]), "created"
    else:
        d.conversation_id, how = int(found["id"]), f"reused (at seq {found['last_seq']})"
        if peer["id"] not in found["member_ids"]:
            await d.call(
                "POST",
                f"/v1/conversations/{d.conversation_id}/members",
                d.sender,
                json={"members": [peer["name"]]},
            )
    return result(
        "accounts",
        title,
        True,
        f"{me['name']} → {peer['name']} in probe conversation {d.conversation_id}, {how}",
        sender=me["name"],
        receiver=peer["name"],
    )


async def check_admin(d: Deployment) -> CheckResult:
    title = "Admin token (release gates, preflight)"
    if d.admin is None:
        return result(
            "admin",
            title,
            False,
            "no --admin-token (or PARLEY_ADMIN_TOKEN): the release gates and the deployment's "
            "configuration cannot be read; pass an admin's token (`parley user token NAME`)",
        )
    me = await d.call("GET", "/v1/me", d.admin)
    if me["role"] != "admin":
        return result("admin", title, False, f"the --admin-token is {me['name']}'s, a {me['role']}")
    return result("admin", title, True, f"{me['name']} (admin)")


# -- delivery -----------------------------------------------------------------------------------


async def check_delivery(d: Deployment, transport: str) -> CheckResult:
    title = {"ws": "WebSocket", "sse": "Server-Sent Events", "poll": "long-poll"}[transport]
    if transport == "poll":
        first = await d.call("GET", "/v1/stream/poll", d.receiver)
        # The cursor makes this race-free: a message sent before the poll subscribes is in its
        # backlog.
        waiting = asyncio.create_task(
            d.call(
                "GET",
                "/v1/stream/poll",
                d.receiver,
                params={"cursor": first["cursor"], "timeout": WAIT_SECONDS},
            )
        )
        started = time.perf_counter()
        sent = await d.send(f"smoke over {transport}")
        answer = await waiting
        elapsed = (time.perf_counter() - started) * 1000
        ok = any(_is_message(sent)(e) for e in answer["events"])
    else:
        listener = await d.open_ws(d.receiver) if transport == "ws" else d.open_sse(d.receiver)
        hello = await listener.wait_for(lambda e: e["type"] in ("hello", "refused"))
        if hello["type"] == "refused":
            raise RuntimeError(f"GET /v1/stream/sse answered {hello['status']}")
        started = time.perf_counter()
        sent = await d.send(f"smoke over {transport}")
        await listener.wait_for(_is_message(sent))
        elapsed = (time.perf_counter() - started) * 1000
        ok = True
    return result(
        f"delivery_{transport}",
        f"Delivery over {title}",
        ok,
        f"message {sent['id']} (seq {sent['seq']}) reached the receiver in {elapsed:.0f} ms",
        latency_ms=round(elapsed, 1),
    )


async def check_receipts(d: Deployment) -> CheckResult:
    """The receiver reads; the sender's client (as an app runs it) sees the receipt."""
    async with d.client(d.sender_token) as watcher:
        seen: asyncio.Queue[Any] = asyncio.Queue()
        watcher.on(seen.put_nowait, "receipt")
        sent = await d.send("smoke: read me")
        seq = int(sent["seq"])
        await d.call(
            "POST",
            f"/v1/conversations/{d.conversation_id}/receipts",
            d.receiver,
            json={"delivered_seq": seq, "read_seq": seq},
        )
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                event = (await seen.get()).data
                if event["conversation_id"] == d.conversation_id and event["read_seq"] >= seq:
                    break
    return result(
        "receipts",
        "Read receipts reach the sender",
        True,
        f"user {event['user_id']} read up to seq {event['read_seq']} (sent seq {seq}), seen by "
        f"the sender's client over {watcher.transport}",
    )


async def check_attachments(d: Deployment) -> CheckResult:
    content = b"parley go/no-go " + secrets.token_bytes(32)
    uploaded = await d.call(
        "POST",
        f"/v1/conversations/{d.conversation_id}/attachments",
        d.sender,
        files={"file": ("gonogo.bin", content)},
    )
    d.written.attachments.append(uploaded["id"])
    await d.send("smoke: attachment", attachments=[uploaded["id"]])
    response = await d.http.get(f"/v1/attachments/{uploaded['id']}", headers=d.receiver)
    digest = hashlib.sha256(response.content).hexdigest()
    ok = response.status_code == 200 and digest == hashlib.sha256(content).hexdigest()
    return result(
        "attachments",
        "Attachments upload and download intact",
        ok,
        f"{len(content)} bytes up as {uploaded['id']}; download HTTP {response.status_code}, "
        f"sha256 {'matches' if ok else 'differs'}",
    )


async def check_reconnect(d: Deployment) -> CheckResult:
    """The sender's client drops its stream; a message comes meanwhile; it resumes from its
    cursor and gets it on the stream (no full-state reload, no REST gap fill)."""
    title = "Reconnect resumes from the cursor (reconnectOk)"
    events: asyncio.Queue[Any] = asyncio.Queue()
    async with d.client(d.sender_token) as client:
        client.on(events.put_nowait, "message", "hello", "resync")
        cursor = client.cursor
        await client.reconnect()
        async with asyncio.timeout(WAIT_SECONDS):
            while client.connected:  # noqa: ASYNC110 - the client has no "dropped" event
                await asyncio.sleep(0.01)
        sent = await d.call(
            "POST",
            f"/v1/conversations/{d.conversation_id}/messages",
            d.receiver,
            json={"client_msg_id": "gonogo-" + secrets.token_hex(8), "body": "while you were away"},
        )
        d.written.messages += 1
        started, hello, got = time.perf_counter(), None, None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WAIT_SECONDS):
                while got is None:
                    event = await events.get()
                    if event.type == "hello":
                        hello = event.data
                    elif event.message is not None and event.message.id == sent["id"]:
                        got = event
        stats = client.stats()
    resumed = (hello or {}).get("resumed")
    if got is None or got.source != "stream" or stats.forced_resyncs:
        how = "never arrived" if got is None else f"arrived by {got.source}"
        return result(
            "reconnect",
            title,
            False,
            f"reconnectOk=false: reconnected from cursor {cursor} (hello resumed {resumed}), "
            f"but message "
            f"{sent['id']} sent while away {how}; forced resyncs {stats.forced_resyncs}",
        )
    elapsed = (time.perf_counter() - started) * 1000
    return result(
        "reconnect",
        title,
        True,
        f"reconnectOk=true: resumed from cursor {cursor} over {stats.transport} "
        f"(hello resumed {resumed}): message "
        f"{sent['id']} sent while away arrived on the stream {elapsed:.0f} ms later",
        reconnect_ms=round(elapsed, 1),
    )


async def check_fallback(d: Deployment) -> CheckResult:
    """The real client behind a relay that refuses WebSocket upgrades: streaming in ≤ 3 s?"""
    title = "Fallback: WebSocket refused → streaming in ≤ 3 s (the real client)"
    relay = HttpRelay(d.url)
    async with serving(relay) as relay_url:
        client = d.client(d.receiver_token, relay_url)
        started = time.perf_counter()
        try:
            await client.connect(timeout=WAIT_SECONDS)
        except Exception as exc:
            await client.close()
            return result(
                "fallback",
                title,
                False,
                f"no transport said hello within {WAIT_SECONDS:.0f} s: {exc}",
            )
        connected_ms = (time.perf_counter() - started) * 1000
        try:
            arrived: asyncio.Queue[Any] = asyncio.Queue()
            client.on(arrived.put_nowait, "message")
            sent = await d.send("smoke after fallback")
            async with asyncio.timeout(WAIT_SECONDS):
                while getattr((await arrived.get()).message, "id", None) != sent["id"]:
                    pass
            delivered_ms = (time.perf_counter() - started) * 1000
            transport = client.transport
        finally:
            await client.close()
    ok = relay.refused > 0 and transport != "ws" and connected_ms <= FALLBACK_LIMIT_MS
    return result(
        "fallback",
        title,
        ok,
        f"{relay.refused} WebSocket upgrade(s) refused; the client was streaming over "
        f"{transport} after {connected_ms:.0f} ms (limit {FALLBACK_LIMIT_MS:.0f}); a message "
        f"arrived over it {delivered_ms:.0f} ms after the start",
        fallback_ms=round(connected_ms, 1),
        transport=transport,
    )


# -- the canary burst: latency, and client reports for the gates ----------------------------------


@dataclass
class Burst:
    latencies_ms: list[float]
    transports: tuple[str, str]
    reports_before: int
    messages_before: int


async def gate_counts(d: Deployment) -> tuple[int, int]:
    """Reports and measured messages the gates hold now (both cohorts)."""
    if d.admin is None:
        return 0, 0
    gates = await d.call("GET", "/v1/admin/release/gates", d.admin)
    cohorts = gates["cohorts"].values()
    return sum(c["reports"] for c in cohorts), sum(c["messages"] for c in cohorts)


async def run_burst(d: Deployment, count: int = BURST_MESSAGES) -> Burst:
    """The sender's client sends `count` messages; the receiver's client times each arrival.

    Closing the clients posts their reports (P0 counters, write receipts) as any app's would:
    the gates check then finds them, so the P0 path is exercised end to end.
    """
    reports_before, messages_before = await gate_counts(d)
    arrivals: dict[int, float] = {}
    everything = asyncio.Event()

    def arrived(event: Any) -> None:
        if event.message is not None and event.source == "stream":
            arrivals.setdefault(event.message.id, time.perf_counter())
        if len(arrivals) >= count:
            everything.set()

    sender, receiver = d.client(d.sender_token), d.client(d.receiver_token)
    async with sender, receiver:
        receiver.on(arrived, "message")
        started: dict[int, float] = {}
        for index in range(count):
            begun = time.perf_counter()
            ack = await sender.send(d.conversation_id, f"canary burst {index + 1}/{count}")
            started[ack.id] = begun
            d.written.messages += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everything.wait(), WAIT_SECONDS)
        transports = (sender.transport, receiver.transport)
    d.written.reports += 1
    latencies = [(arrivals[i] - t) * 1000 for i, t in started.items() if i in arrivals]
    latencies += [WAIT_SECONDS * 1000] * (len(started) - len(latencies))  # lost: as slow as can be
    return Burst(latencies, transports, reports_before, messages_before)


async def check_latency(d: Deployment, burst: Burst) -> CheckResult:
    samples = burst.latencies_ms
    p50, p95 = percentile(samples, 0.5) or 0.0, percentile(samples, 0.95) or 0.0
    return result(
        "latency_p95",
        "p95 send → delivered to the other member ≤ 1 s",
        p95 <= P95_LIMIT_MS,
        f"{len(samples)} messages of the canary burst ({burst.transports[0]} → "
        f"{burst.transports[1]}): p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(samples):.0f} "
        f"ms (limit {P95_LIMIT_MS:.0f} ms)",
        p50_ms=round(p50, 1),
        p95_ms=round(p95, 1),
        max_ms=round(max(samples), 1),
    )


MARKS = {True: "true", False: "false", None: "waiting for data"}


async def check_gates(d: Deployment, burst: Burst) -> CheckResult:
    """GO needs an explicit PROCEED with enough data, and the burst's reports in it."""
    title = "Release gates: PROCEED, with this run's client reports in them"
    if d.admin is None:
        raise RuntimeError("no admin token")
    deadline = time.monotonic() + WAIT_SECONDS
    while True:  # another node may hold the reports until its next watcher tick
        gates = await d.call("GET", "/v1/admin/release/gates", d.admin)
        reports = sum(c["reports"] for c in gates["cohorts"].values())
        messages = sum(c["messages"] for c in gates["cohorts"].values())
        arrived = messages - burst.messages_before >= len(burst.latencies_ms) and reports > (
            burst.reports_before
        )
        if arrived or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    state = await d.call("GET", "/v1/admin/release", d.admin)
    ok = (
        arrived
        and gates["rollout_decision"] == "PROCEED"
        and gates["gate_p0_ok"] is True
        and gates["gate_p1_ok"] is True
        and gates["gate_rollout_ok"] is True
        and not state["killed"]
    )
    evidence = (
        f"stage {state['stage']} ({state['percentage']} %), kill switch "
        f"{'ON' if state['killed'] else 'off'}; gate_p0_ok={MARKS[gates['gate_p0_ok']]}, "
        f"gate_p1_ok={MARKS[gates['gate_p1_ok']]}, "
        f"gate_rollout_ok={MARKS[gates['gate_rollout_ok']]}, "
        f"rollout_decision={gates['rollout_decision']}; the burst's reports "
        + ("reached the gates" if arrived else "did NOT reach the gates")
        + f" ({reports - burst.reports_before} reports, "
        f"{messages - burst.messages_before} messages added)"
    )
    if gates["reasons"]:
        evidence += "; " + "; ".join(gates["reasons"])
    if gates.get("warnings"):
        evidence += "; warnings: " + "; ".join(gates["warnings"])
    return CheckResult(
        "gates",
        title,
        Status.PASS if ok else Status.FAIL,
        evidence,
        {"state": state, "gates": gates},
    )


# -- metrics -----------------------------------------------------------------------------------


async def scrape(d: Deployment) -> dict[str, float]:
    """/metrics as {sample name with labels: value}; raises unless it answers 200."""
    from prometheus_client.parser import text_string_to_metric_families

    # /metrics is not public: send the deployment's PARLEY_METRICS_TOKEN when one is set here.
    token = Settings().metrics_token
    response = await d.http.get(
        "/metrics", headers={"Authorization": f"Bearer {token}"} if token else None
    )
    if response.status_code != 200:
        raise RuntimeError(f"/metrics answered HTTP {response.status_code}")
    values = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def _gate_sample(gate: str) -> str:
    return f'parley_release_gate_ok{{gate="{gate}"}}'


def _total(values: dict[str, float], name: str) -> float:
    return sum(v for k, v in values.items() if k.startswith(name + "{"))


async def check_metrics(d: Deployment, before: dict[str, float]) -> CheckResult:
    """Not names (HELP lines always print those) but values that moved with this run."""
    after = await scrape(d)
    moved = {
        name: _total(after, name) - _total(before, name)
        for name in (
            "parley_sends_total",
            "parley_stream_opens_total",
            "parley_client_write_receipt_seconds_count",
        )
    }
    gauges = [g for g in ("p0", "p1", "rollout") if _gate_sample(g) in after]
    still = [name for name, delta in moved.items() if delta <= 0]
    ok = not still and len(gauges) == 3
    evidence = "; ".join(f"{name} +{delta:g}" for name, delta in moved.items())
    evidence += f"; parley_release_gate_ok has {len(gauges)} of 3 gates"
    if still:
        evidence += f" — did not move with this run's traffic: {', '.join(still)} (a stale or "
        evidence += "cached /metrics, or another process's?)"
    return result("metrics", "Prometheus metrics move with this run's traffic", ok, evidence)


# -- seed 002: SSO login redirect, call signalling relay ------------------------------------------


async def check_sso(d: Deployment) -> CheckResult:
    """Each SSO provider's login redirects to it with PKCE, state and nonce, and it answers."""
    title = "Single sign-on login redirect"
    listed = (await d.http.get("/v1/auth/sso/providers")).json()["providers"]
    if not listed:
        return result("sso", title, True, "no SSO providers configured (password sign-in)")
    problems, seen = [], []
    for provider in listed:
        response = await d.http.get(provider["login_url"], params={"next": "/"})
        location = response.headers.get("location", "")
        wanted = ("code_challenge_method=S256", "state=", "nonce=")
        if response.status_code != 302 or not all(part in location for part in wanted):
            problems.append(f"{provider['name']}: login answered HTTP {response.status_code}")
            continue
        async with httpx.AsyncClient(timeout=15, follow_redirects=True) as browser:
            at_provider = await browser.get(location)
        if at_provider.status_code != 200:
            problems.append(
                f"{provider['name']}: the provider answered HTTP {at_provider.status_code}"
            )
        else:
            seen.append(f"{provider['name']} → {location.split('?', 1)[0]} (HTTP 200)")
    evidence = "; ".join(problems or seen)
    return result("sso", title, not problems, evidence, providers=len(listed))


async def check_calls(d: Deployment) -> CheckResult:
    """Seed 002 §8.1.4: call.offer / call.reject / call.answer / call.hangup relayed.

    Signals go over REST and the parties listen over SSE, so the check holds in the `sse_only`
    rollback mode too (WebSocket frames carry the same signals; delivery_ws covers that path).
    """
    config = await d.call("GET", "/v1/calls/config", d.sender)
    peer = await d.call("GET", "/v1/me", d.receiver)
    caller, callee = d.open_sse(d.sender), d.open_sse(d.receiver)
    await caller.wait_for(lambda e: e["type"] == "hello")
    await callee.wait_for(lambda e: e["type"] == "hello")
    caller_device, callee_device = "smoke-" + secrets.token_hex(4), "smoke-" + secrets.token_hex(4)

    def relayed(kind: str, call_id: str) -> Callable[[Event], bool]:
        return lambda e: e["type"] == kind and e.get("call", {}).get("id") == call_id

    async def offer() -> str:
        call_id = "smoke" + secrets.token_hex(12)
        await d.call(
            "POST",
            f"/v1/conversations/{d.conversation_id}/calls",
            d.sender,
            json={"call_id": call_id, "device_id": caller_device, "to_user_id": peer["id"],
                  "sdp": _SMOKE_SDP},
        )  # fmt: skip
        await callee.wait_for(relayed("call.offer", call_id))
        return call_id

    def ends(device: str) -> dict[str, Any]:
        return {"json": {"device_id": device}}

    rejected = await offer()
    await d.call("POST", f"/v1/calls/{rejected}/reject", d.receiver, **ends(callee_device))
    await caller.wait_for(relayed("call.reject", rejected))
    answered = await offer()
    await d.call(
        "POST",
        f"/v1/calls/{answered}/answer",
        d.receiver,
        json={"device_id": callee_device, "sdp": _SMOKE_SDP},
    )
    await caller.wait_for(relayed("call.answer", answered))
    await d.call("POST", f"/v1/calls/{answered}/hangup", d.sender, **ends(caller_device))
    hangup = await callee.wait_for(relayed("call.hangup", answered))
    turn = [s for s in config["ice_servers"] if s.get("username")]
    return result(
        "calls",
        "Call signalling relay (call.offer / call.reject / call.hangup)",
        hangup["call"]["state"] == "ended",
        "callSignalRelayed=true, callRejectRelayed=true, callHangupRelayed=true; "
        f"{len(config['ice_servers'])} ICE servers"
        + (f", TURN credentials valid {config['ttl_seconds']} s" if turn else ", no TURN"),
        ice_servers=len(config["ice_servers"]),
        turn=bool(turn),
    )


# A minimal session description: the relay carries it, it is never negotiated.
_SMOKE_SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=parley smoke\r\nt=0 0\r\n"
