"""Dispute webhooks: signed POSTs of every transition, delivered at least once, in order per
dispute, so the marketplace's payment system can move the escrowed money.

Each request carries

    X-Parley-Event: dispute.resolved
    X-Parley-Delivery: 42                       (the same on every retry: deduplicate on it)
    X-Parley-Signature: t=1796000000,v1=<hex>   (HMAC-SHA256 of "<t>.<body>" with the secret)

and the body `{"id": 42, "event": ..., "created_at": ..., "transition": {...}, "dispute": {...}}`.
Any 2xx is delivered; anything else is retried with exponential backoff (1 s, 2 s, 4 s... at
most an hour) up to PARLEY_DISPUTE_WEBHOOK_MAX_ATTEMPTS, then given up and counted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from parley import metrics
from parley.storage.disputes import DisputeStore

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=1)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Parley-Signature` value for `body` sent at `timestamp` (Unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, tolerance: int = 300) -> bool:
    """What a receiver does: recompute the signature, compare in constant time, check age."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    fresh = abs(time.time() - timestamp) <= tolerance
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))


def backoff(attempts: int) -> timedelta:
    return min(MAX_BACKOFF, timedelta(seconds=2 ** max(0, attempts - 1)))


def _where(url: str) -> str:
    """The URL without credentials or query, fit for a log line."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


class WebhookSender:
    def __init__(
        self,
        store: DisputeStore,
        *,
        url: str,
        secret: str,
        max_attempts: int,
        timeout: float,
    ) -> None:
        self.store = store
        self.url = url
        self.secret = secret
        self.max_attempts = max_attempts
        self._http = httpx.AsyncClient(timeout=timeout)
        # A claimed delivery is this node's for twice the request timeout; if the node dies
        # mid-way, another one (or this one, restarted) takes it over after that.
        self.lease = timedelta(seconds=2 * timeout)

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    async def close(self) -> None:
        await self._http.aclose()

    async def deliver_due(self, at: datetime) -> int:
        """Send every delivery due at `at` that this node could claim; returns how many."""
        if not self.enabled:
            return 0
        claimed = await self.store.claim_webhooks(at, at + self.lease)
        for delivery in claimed:
            await self._deliver(delivery, at)
        return len(claimed)

    async def _deliver(self, delivery: dict[str, Any], at: datetime) -> None:
        body = json.dumps(
            {"id": delivery["id"], **delivery["payload"]}, separators=(",", ":")
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Parley-Webhooks/1",
            "X-Parley-Event": delivery["event"],
            "X-Parley-Delivery": str(delivery["id"]),
            "X-Parley-Signature": sign(self.secret, body, int(time.time())),
        }
        attempts = delivery["attempts"] + 1
        error = ""
        try:
            response = await self._http.post(self.url, content=body, headers=headers)
            if 200 <= response.status_code < 300:
                await self.store.finish_webhook(
                    delivery["id"],
                    delivered=True,
                    attempts=attempts,
                    next_attempt_at=None,
                    error="",
                )
                metrics.DISPUTE_WEBHOOK_DELIVERIES.labels("delivered").inc()
                return
            error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        gave_up = attempts >= self.max_attempts
        await self.store.finish_webhook(
            delivery["id"],
            delivered=False,
            attempts=attempts,
            next_attempt_at=None if gave_up else at + backoff(attempts),
            error=error[:500],
        )
        metrics.DISPUTE_WEBHOOK_DELIVERIES.labels("failed" if gave_up else "retry").inc()
        log.warning(
            "dispute webhook %s to %s failed (attempt %d of %d): %s",
            delivery["id"],
            _where(self.url),
            attempts,
            self.max_attempts,
            error,
        )
