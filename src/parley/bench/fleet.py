"""The bench's clients: one raw WebSocket per user, and what every one of them saw.

A fleet opens its connections, sends `send` frames on request, and reads every frame each
connection gets. It times each send from the moment it was *scheduled* (a sender that falls
behind shows up as latency) to its ack and to its arrival at each member, and counts what a
correct stream never does: a repeated or out-of-order position, a gap in a conversation's `seq`,
an acked message that never reached its sender's own stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from parley.bench.servers import BenchUser
from parley.bench.stats import Latencies

ACK_RECEIPT_DEADLINE_NS = 10 * 1_000_000_000


@dataclass(slots=True)
class Sent:
    """One send in flight: when it was due, and who has seen it so far."""

    conversation_id: int
    sender: int
    scheduled_ns: int
    expected: int
    got: int = 0
    acked_ns: int = 0
    sender_seen_ns: int = 0


@dataclass(slots=True, eq=False)
class Client:
    index: int
    user: BenchUser
    url: str
    conversation_id: int | None
    ws: ClientConnection | None = None
    reader: asyncio.Task[None] | None = None
    hello: asyncio.Event = field(default_factory=asyncio.Event)
    last_pos: int = 0
    last_seq: dict[int, int] = field(default_factory=dict)
    closing: bool = False


@dataclass
class Tally:
    """What the fleet saw during one step (reset between steps)."""

    sent: int = 0
    send_failures: int = 0
    acks: int = 0
    ack_duplicates: int = 0
    deliveries: int = 0
    foreign_deliveries: int = 0
    other_events: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    ack_ms: Latencies = field(default_factory=Latencies)
    deliver_ms: Latencies = field(default_factory=Latencies)
    deliver_all_ms: Latencies = field(default_factory=Latencies)
    last_ack_ns: int = 0
    last_delivery_ns: int = 0


@dataclass
class Violations:
    """P0 and ordering violations seen client-side over the whole run (must stay 0).

    Only what the server promised counts: a send that was never acked (the server was too
    slow, or refused it) is an error of the step, not a violation.
    """

    duplicates: int = 0
    out_of_order: int = 0
    seq_gaps: int = 0
    # A member that never got a message acked at least 10 s before the step ended.
    missing_after_ack: int = 0
    ack_without_receipt_10s: int = 0

    def total(self) -> int:
        return sum(vars(self).values())


class Fleet:
    def __init__(
        self,
        users: list[BenchUser],
        urls: list[str],
        *,
        conversation_of: dict[int, int] | None = None,
        members: dict[int, int] | None = None,
        deflate: bool = False,
    ) -> None:
        conversation_of = conversation_of or {}
        self.clients = [
            Client(i, user, _ws_url(urls[i % len(urls)]), conversation_of.get(user.id))
            for i, user in enumerate(users)
        ]
        # Members per conversation: how many connections each message must reach.
        self.members = members or {}
        self.deflate = deflate
        self.sent: dict[str, Sent] = {}
        self.tally = Tally()
        self.violations = Violations()
        self.connect_failures: Counter[str] = Counter()
        self.connect_ms = Latencies()

    @property
    def connected(self) -> int:
        return sum(1 for c in self.clients if c.ws is not None and c.hello.is_set())

    # -- connections -----------------------------------------------------------------------------

    async def connect_all(self, concurrency: int, deadline: float) -> None:
        """Open every connection (at most `concurrency` handshakes at once) and await hellos."""
        gate = asyncio.Semaphore(concurrency)

        async def open_one(client: Client) -> None:
            async with gate:
                if time.monotonic() > deadline:
                    self.connect_failures["deadline"] += 1
                    return
                await self._open(client)

        await asyncio.gather(*(open_one(c) for c in self.clients))

    async def _open(self, client: Client) -> None:
        started = time.monotonic()
        client.closing = False
        client.hello.clear()
        try:
            client.ws = await connect(
                client.url,
                additional_headers={"Authorization": f"Bearer {client.user.token}"},
                compression="deflate" if self.deflate else None,
                max_queue=None,
                open_timeout=60,
                ping_interval=None,
                close_timeout=2,
            )
            client.reader = asyncio.create_task(self._read(client))
            await asyncio.wait_for(client.hello.wait(), 60)
            self.connect_ms.add((time.monotonic() - started) * 1000)
        except (OSError, TimeoutError, WebSocketException) as exc:
            self.connect_failures[type(exc).__name__] += 1
            await self._drop(client)

    async def close_all(self) -> None:
        for client in self.clients:
            client.closing = True
        await asyncio.gather(*(self._drop(c) for c in self.clients))

    async def _drop(self, client: Client) -> None:
        client.closing = True
        if client.ws is not None:
            with contextlib.suppress(Exception):
                await client.ws.close()
        if client.reader is not None:
            client.reader.cancel()
            await asyncio.gather(client.reader, return_exceptions=True)
        client.ws = client.reader = None

    async def _read(self, client: Client) -> None:
        ws = client.ws
        assert ws is not None
        try:
            async for frame in ws:
                if isinstance(frame, str):
                    self._on_frame(client, frame)
        except ConnectionClosed:
            pass
        if not client.closing:
            code = ws.close_code if ws.close_code is not None else "none"
            self.tally.errors[f"closed:{code}"] += 1

    # -- frames ----------------------------------------------------------------------------------

    def _on_frame(self, client: Client, text: str) -> None:
        now = time.monotonic_ns()
        event = json.loads(text)
        kind = event.get("type")
        tally = self.tally
        if kind == "message":
            self._on_message(client, event, now)
        elif kind == "ack":
            sent = self.sent.get(event["ref"])
            if sent is not None and not sent.acked_ns:
                sent.acked_ns = now
                tally.acks += 1
                tally.last_ack_ns = now
                tally.ack_ms.add((now - sent.scheduled_ns) / 1e6)
                if event.get("duplicate"):
                    tally.ack_duplicates += 1
        elif kind == "hello":
            client.hello.set()
        elif kind == "error":
            tally.errors[str(event.get("code"))] += 1
        else:
            tally.other_events += 1

    def _on_message(self, client: Client, event: dict[str, object], now: int) -> None:
        pos = int(event["pos"])  # type: ignore[call-overload]
        if pos <= client.last_pos:
            # The stream is strictly increasing by position: this is a repeat or a reorder.
            if pos == client.last_pos:
                self.violations.duplicates += 1
            else:
                self.violations.out_of_order += 1
            return
        client.last_pos = pos
        cid = int(event["conversation_id"])  # type: ignore[call-overload]
        seq = int(event["seq"])  # type: ignore[call-overload]
        last = client.last_seq.get(cid)
        if last is not None and seq != last + 1:
            self.violations.seq_gaps += 1
        client.last_seq[cid] = seq
        tally = self.tally
        tally.deliveries += 1
        tally.last_delivery_ns = now
        message = event["message"]
        sent = self.sent.get(message["client_msg_id"])  # type: ignore[index]
        if sent is None:
            tally.foreign_deliveries += 1
            return
        sent.got += 1
        tally.deliver_ms.add((now - sent.scheduled_ns) / 1e6)
        if client.index == sent.sender:
            sent.sender_seen_ns = now
        if sent.got == sent.expected:
            tally.deliver_all_ms.add((now - sent.scheduled_ns) / 1e6)

    # -- sending ---------------------------------------------------------------------------------

    async def send(self, client: Client, client_msg_id: str, body: str, scheduled_ns: int) -> None:
        """Send one `send` frame; its latencies count from `scheduled_ns`."""
        cid = client.conversation_id
        if client.ws is None or cid is None:
            self.tally.send_failures += 1
            return
        # Registered before the frame leaves: its ack may be read before `send` returns.
        self.sent[client_msg_id] = Sent(cid, client.index, scheduled_ns, self.members.get(cid, 1))
        frame = (
            f'{{"type":"send","conversation_id":{cid},'
            f'"client_msg_id":"{client_msg_id}","body":"{body}"}}'
        )
        try:
            await client.ws.send(frame)
            self.tally.sent += 1
        except (ConnectionClosed, OSError):
            self.tally.send_failures += 1
            del self.sent[client_msg_id]

    def expected_deliveries(self) -> int:
        return sum(s.expected for s in self.sent.values())

    def received_deliveries(self) -> int:
        return sum(s.got for s in self.sent.values())

    def settle_step(self) -> dict[str, int]:
        """Count what the step's sends never got, then forget them.

        Returns the step's shortfalls that are not violations: sends never acked, and
        deliveries still outstanding for acks younger than 10 s (undecided, not lost).
        """
        now = time.monotonic_ns()
        unacked = pending = 0
        for sent in self.sent.values():
            if not sent.acked_ns:
                unacked += 1
                continue
            due = now - sent.acked_ns >= ACK_RECEIPT_DEADLINE_NS
            if sent.got < sent.expected:
                if due:
                    self.violations.missing_after_ack += sent.expected - sent.got
                else:
                    pending += sent.expected - sent.got
            late = (sent.sender_seen_ns or now) - sent.acked_ns > ACK_RECEIPT_DEADLINE_NS
            if late and (sent.sender_seen_ns or due):
                self.violations.ack_without_receipt_10s += 1
        self.sent.clear()
        self.tally = Tally()
        return {"unacked_at_end": unacked, "undelivered_at_end": pending}


def _ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1).rstrip("/") + "/v1/stream/ws"
