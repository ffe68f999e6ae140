"""Jepsen-style histories of sends: every client logs each operation as ok, failed or unknown,
and after the fault the history is checked against what the database kept.

- ok:      the server acknowledged it (201/200, or a WS ack) — it must be stored, exactly once,
           with the acknowledged id, seq and position;
- failed:  the server said it was not stored (a 4xx) — it must not be;
- unknown: no answer, a timeout or a 503 — it may or may not be stored (a retry with the same
           client_msg_id settles it).
Whatever is stored was sent by someone, and the conversation's seqs are 1..n with no gap.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

Outcome = Literal["ok", "failed", "unknown"]


@dataclass
class Op:
    client: str
    client_msg_id: str
    node: str
    outcome: Outcome = "unknown"
    ack: dict[str, Any] | None = None
    status: int | None = None
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)

    def outcomes(self) -> Counter[str]:
        return Counter(op.outcome for op in self.ops)

    def by_id(self, outcome: Outcome) -> set[str]:
        return {op.client_msg_id for op in self.ops if op.outcome == outcome}

    async def send(
        self,
        client: str,
        node_url: str,
        token: str,
        conversation_id: int,
        client_msg_id: str,
        *,
        timeout: float = 20,
        body_chars: int = 0,
        metadata: dict[str, Any] | None = None,
    ) -> Op:
        """POST one message and log the operation with its outcome."""
        op = Op(client, client_msg_id, node_url)
        self.ops.append(op)
        try:
            async with httpx.AsyncClient(
                base_url=node_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
            ) as http:
                response = await http.post(
                    f"/v1/conversations/{conversation_id}/messages",
                    json={
                        "client_msg_id": client_msg_id,
                        "body": f"body of {client_msg_id}".ljust(body_chars, "."),
                        "metadata": metadata or {},
                    },
                )
        except (httpx.HTTPError, OSError):
            op.outcome = "unknown"
        else:
            op.status = response.status_code
            if response.status_code in (200, 201):
                op.outcome, op.ack = "ok", response.json()
            elif response.status_code >= 500:
                op.outcome = "unknown"
            else:
                op.outcome = "failed"
        op.ended = time.monotonic()
        return op

    async def settle(
        self, client: str, node_url: str, token: str, conversation_id: int, deadline: float = 60
    ) -> None:
        """Retry every unknown send (same client_msg_id) until each has an answer."""
        until = time.monotonic() + deadline
        unknown = self.by_id("unknown") - self.by_id("ok")
        while unknown:
            assert time.monotonic() < until, f"still unknown: {sorted(unknown)}"
            for client_msg_id in sorted(unknown):
                await self.send(client, node_url, token, conversation_id, client_msg_id)
            unknown = self.by_id("unknown") - self.by_id("ok")
            if unknown:
                await asyncio.sleep(0.5)

    def check(self, stored: list[dict[str, Any]]) -> None:
        """The history against the conversation's stored timeline (REST, in seq order)."""
        ids = [m["client_msg_id"] for m in stored]
        twice = [i for i, n in Counter(ids).items() if n > 1]
        assert not twice, f"stored more than once: {twice}"
        assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1)), "seq has a gap"
        by_id = {m["client_msg_id"]: m for m in stored}
        acked = self.by_id("ok")
        lost = acked - set(by_id)
        assert not lost, f"acknowledged but not stored: {sorted(lost)}"
        for op in self.ops:
            if op.outcome == "ok" and op.ack is not None:
                message = by_id[op.client_msg_id]
                assert {k: op.ack[k] for k in ("id", "seq", "pos")} == {
                    k: message[k] for k in ("id", "seq", "pos")
                }, f"the ack of {op.client_msg_id} does not match what is stored"
        refused = self.by_id("failed") - acked
        assert not refused & set(by_id), f"refused yet stored: {sorted(refused & set(by_id))}"
        attempted = {op.client_msg_id for op in self.ops}
        assert set(by_id) <= attempted, f"stored, never sent: {sorted(set(by_id) - attempted)}"
