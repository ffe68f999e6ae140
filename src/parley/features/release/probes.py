"""Probes against a live deployment, as a client sees it: health, delivery over WebSocket, SSE
and long-poll, fallback, receipts, attachments, latency, release gates.

Two smoke accounts (a sender and a receiver) drive them. Each probe returns a `CheckResult`
with its evidence and never raises: a broken deployment makes a red report, not a traceback.
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
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from parley.features.release.stats import percentile
from parley.settings import Settings

Event = dict[str, Any]
FALLBACK_LIMIT_MS = 3000.0  # seed 000: fallback ≤ 3 s
P95_LIMIT_MS = 1000.0  # seed 000: p95 ≤ 1 s
LATENCY_SAMPLES = 20
WAIT_SECONDS = 10.0


@dataclass
class CheckResult:
    name: str
    title: str
    ok: bool
    evidence: str
    values: dict[str, Any] = field(default_factory=dict)


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


class Deployment:
    """One deployment reached as two smoke accounts: `sender` writes, `receiver` listens."""

    def __init__(self, http: httpx.AsyncClient, sender_token: str, receiver_token: str) -> None:
        self.http = http
        self.sender = {"Authorization": f"Bearer {sender_token}"}
        self.receiver = {"Authorization": f"Bearer {receiver_token}"}
        self.conversation_id = 0
        self.listeners: list[Listener] = []

    @property
    def ws_url(self) -> str:
        base = str(self.http.base_url).rstrip("/")
        return base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)

    async def call(self, method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        response = await self.http.request(method, path, headers=headers, **kw)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json() if response.content else None

    async def open_ws(self, headers: dict[str, str], path: str = "/v1/stream/ws") -> WsListener:
        socket = await connect(self.ws_url + path, additional_headers=headers, open_timeout=5)
        listener = WsListener(socket)
        self.listeners.append(listener)
        await listener.wait_for(lambda e: e["type"] == "hello")
        return listener

    def open_sse(self, headers: dict[str, str]) -> SseListener:
        listener = SseListener(self.http, headers)
        self.listeners.append(listener)
        return listener

    async def send(self, body: str) -> dict[str, Any]:
        sent: dict[str, Any] = await self.call(
            "POST",
            f"/v1/conversations/{self.conversation_id}/messages",
            self.sender,
            json={"client_msg_id": "gonogo-" + secrets.token_hex(8), "body": body},
        )
        return sent

    async def close(self) -> None:
        for listener in self.listeners:
            await listener.close()


def _is_message(sent: dict[str, Any]) -> Callable[[Event], bool]:
    return lambda e: e["type"] == "message" and e["message"]["id"] == sent["id"]


# -- the probes -----------------------------------------------------------------------------------


async def check_health(d: Deployment) -> CheckResult:
    response = await d.http.get("/readyz")
    body = (
        response.json()
        if response.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    ok = response.status_code == 200 and body.get("status") == "ok"
    return CheckResult(
        "health",
        "Readiness (/readyz)",
        ok,
        f"HTTP {response.status_code}: {json.dumps(body.get('checks', body))}",
    )


async def check_setup(d: Deployment) -> CheckResult:
    me = await d.call("GET", "/v1/me", d.sender)
    peer = await d.call("GET", "/v1/me", d.receiver)
    created = await d.call(
        "POST",
        "/v1/conversations",
        d.sender,
        json={"kind": "group", "title": "go/no-go smoke", "members": [peer["name"]]},
    )
    d.conversation_id = int(created["id"])
    return CheckResult(
        "accounts",
        "Smoke accounts sign in and share a conversation",
        True,
        f"{me['name']} → {peer['name']} in conversation {d.conversation_id}",
    )


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
        await listener.wait_for(lambda e: e["type"] == "hello")
        started = time.perf_counter()
        sent = await d.send(f"smoke over {transport}")
        await listener.wait_for(_is_message(sent))
        elapsed = (time.perf_counter() - started) * 1000
        ok = True
    return CheckResult(
        f"delivery_{transport}",
        f"Delivery over {title}",
        ok,
        f"message {sent['id']} (seq {sent['seq']}) reached the receiver in {elapsed:.0f} ms",
        {"latency_ms": round(elapsed, 1)},
    )


async def check_fallback(d: Deployment) -> CheckResult:
    """A WebSocket refused on the way (as a proxy that blocks upgrades would), then SSE."""
    started = time.perf_counter()
    try:
        await d.open_ws(d.receiver, path="/v1/stream/ws-blocked-by-gonogo")
        refused = "the blocked WebSocket unexpectedly opened"
    except Exception as exc:
        refused = f"WebSocket refused ({type(exc).__name__})"
    refused_ms = (time.perf_counter() - started) * 1000
    listener = d.open_sse(d.receiver)
    await listener.wait_for(lambda e: e["type"] in ("hello", "refused"))
    streaming_ms = (time.perf_counter() - started) * 1000
    sent = await d.send("smoke after fallback")
    await listener.wait_for(_is_message(sent))
    delivered_ms = (time.perf_counter() - started) * 1000
    ok = streaming_ms <= FALLBACK_LIMIT_MS and "refused (" in refused
    return CheckResult(
        "fallback",
        "Fallback WebSocket → SSE ≤ 3 s",
        ok,
        f"{refused} after {refused_ms:.0f} ms; SSE streaming after {streaming_ms:.0f} ms "
        f"(limit {FALLBACK_LIMIT_MS:.0f}); message over SSE after {delivered_ms:.0f} ms",
        {"fallback_ms": round(streaming_ms, 1), "delivered_ms": round(delivered_ms, 1)},
    )


async def check_receipts(d: Deployment) -> CheckResult:
    watcher = await d.open_ws(d.sender)
    sent = await d.send("smoke: read me")
    seq = int(sent["seq"])
    await d.call(
        "POST",
        f"/v1/conversations/{d.conversation_id}/receipts",
        d.receiver,
        json={"delivered_seq": seq, "read_seq": seq},
    )
    event = await watcher.wait_for(
        lambda e: (
            e["type"] == "receipt"
            and e["conversation_id"] == d.conversation_id
            and e["read_seq"] >= seq
        )
    )
    return CheckResult(
        "receipts",
        "Read receipts reach the sender",
        True,
        f"user {event['user_id']} read up to seq {event['read_seq']} (sent seq {seq})",
    )


async def check_attachments(d: Deployment) -> CheckResult:
    content = b"parley go/no-go " + secrets.token_bytes(32)
    uploaded = await d.call(
        "POST",
        f"/v1/conversations/{d.conversation_id}/attachments",
        d.sender,
        files={"file": ("gonogo.bin", content)},
    )
    await d.call(
        "POST",
        f"/v1/conversations/{d.conversation_id}/messages",
        d.sender,
        json={
            "client_msg_id": "gonogo-" + secrets.token_hex(8),
            "body": "smoke: attachment",
            "attachments": [uploaded["id"]],
        },
    )
    response = await d.http.get(f"/v1/attachments/{uploaded['id']}", headers=d.receiver)
    digest = hashlib.sha256(response.content).hexdigest()
    ok = response.status_code == 200 and digest == hashlib.sha256(content).hexdigest()
    return CheckResult(
        "attachments",
        "Attachments upload and download intact",
        ok,
        f"{len(content)} bytes up as {uploaded['id']}; download HTTP {response.status_code}, "
        f"sha256 {'matches' if ok else 'differs'}",
    )


async def check_latency(d: Deployment) -> CheckResult:
    listener = await d.open_ws(d.receiver)
    samples = []
    for index in range(LATENCY_SAMPLES):
        started = time.perf_counter()
        sent = await d.send(f"smoke latency {index}")
        await listener.wait_for(_is_message(sent))
        samples.append((time.perf_counter() - started) * 1000)
    p50, p95 = percentile(samples, 0.5) or 0.0, percentile(samples, 0.95) or 0.0
    return CheckResult(
        "latency_p95",
        "p95 send → delivered ≤ 1 s",
        p95 <= P95_LIMIT_MS,
        f"{len(samples)} messages: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(samples):.0f} ms "
        f"(limit {P95_LIMIT_MS:.0f} ms)",
        {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "max_ms": round(max(samples), 1)},
    )


async def check_gates(d: Deployment, admin: dict[str, str] | None) -> CheckResult:
    title = "Release gates (P0 = 0, P1 within thresholds, kill switch off)"
    if admin is None:
        return CheckResult("gates", title, False, "no admin token: the gates cannot be read")
    gates = await d.call("GET", "/v1/admin/release/gates", admin)
    state = await d.call("GET", "/v1/admin/release", admin)
    ok = gates["gate_p0_ok"] is True and gates["gate_p1_ok"] is not False and not state["killed"]
    marks = {True: "true", False: "false", None: "waiting for data"}
    evidence = (
        f"stage {state['stage']} ({state['percentage']} %), kill switch "
        f"{'ON' if state['killed'] else 'off'}; gate_p0_ok={marks[gates['gate_p0_ok']]}, "
        f"gate_p1_ok={marks[gates['gate_p1_ok']]}, "
        f"gate_rollout_ok={marks[gates['gate_rollout_ok']]}, "
        f"rollout_decision={gates['rollout_decision']}"
    )
    if gates["reasons"]:
        evidence += "; " + "; ".join(gates["reasons"])
    return CheckResult("gates", title, ok, evidence, {"state": state, "gates": gates})


async def check_metrics(d: Deployment) -> CheckResult:
    # /metrics is not public: send the deployment's PARLEY_METRICS_TOKEN when one is set here.
    token = Settings().metrics_token
    response = await d.http.get(
        "/metrics", headers={"Authorization": f"Bearer {token}"} if token else None
    )
    wanted = ("parley_client_reported_total", "parley_release_gate_ok")
    missing = [name for name in wanted if name not in response.text]
    ok = response.status_code == 200 and not missing
    return CheckResult(
        "metrics",
        "Prometheus metrics exported",
        ok,
        f"/metrics HTTP {response.status_code}"
        + (f"; missing {', '.join(missing)}" if missing else "; P0 counters and gates present"),
    )


# Hosts that belong in development, never in a production inbox's allowlist (seed 001, §2).
_DEV_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "example.com", "example.org"}  # noqa: S104
_DEV_SUFFIXES = (".localhost", ".local", ".test", ".example", ".invalid", ".example.com")


def _dev_domain(domain: str) -> bool:
    host = domain.removeprefix("*.").lower()
    return host in _DEV_HOSTS or host.endswith(_DEV_SUFFIXES)


def inbox_problems(inbox: dict[str, Any], *, default_branch: bool) -> list[str]:
    """What keeps one enabled inbox from being production-ready; empty when it is."""
    name = inbox["name"]
    problems = []
    domains = inbox["allowed_domains"]
    if not domains:
        problems.append(f"inbox {name!r} allows no domain, so no site can embed it")
    dev = [d for d in domains if _dev_domain(d)]
    if dev:
        problems.append(f"inbox {name!r} allows development hosts: {', '.join(dev)}")
    routed = inbox["routing_rules"] or inbox["branch_id"] is not None or default_branch
    if not routed and not inbox["operators"]:
        problems.append(
            f"inbox {name!r} has no routing rules, no branch, no operators and no "
            "PARLEY_DEFAULT_BRANCH_ID: nobody would see its chats"
        )
    return problems


async def check_messenger(d: Deployment, admin: dict[str, str] | None) -> CheckResult:
    """The website chat's configuration: allowlists, routing or fallback, the default branch."""
    title = "Website chat inboxes (allowlists, routing, default branch)"
    if admin is None:
        return CheckResult("messenger", title, False, "no admin token: inboxes cannot be read")
    ready = (await d.http.get("/readyz")).json()
    branch_problem = ready.get("checks", {}).get("default_branch")
    inboxes = (await d.call("GET", "/v1/admin/inboxes", admin))["inboxes"]
    enabled = [inbox for inbox in inboxes if inbox["enabled"]]
    problems = [branch_problem] if branch_problem not in (None, "ok") else []
    for inbox in enabled:
        problems += inbox_problems(inbox, default_branch=branch_problem == "ok")
    if problems:
        evidence = "; ".join(problems)
    elif not inboxes:
        evidence = "no inboxes: the website chat is not in use"
    else:
        evidence = f"{len(enabled)} of {len(inboxes)} inboxes enabled, each allowlisted and routed"
    return CheckResult("messenger", title, not problems, evidence, {"inboxes": len(inboxes)})
