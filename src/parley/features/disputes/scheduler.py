"""The dispute scheduler: fires SLA deadlines on time, once, and delivers the webhooks.

Deadlines live in the database (`disputes.deadline_at`), so they survive any restart. One loop
per serving node sleeps until the earliest unfired deadline (at most
PARLEY_DISPUTE_SCHEDULER_SECONDS, so deadlines set on other nodes are seen) and then claims each
passed one with a conditional UPDATE: whichever node gets there first fires it, exactly once —
a deadline that passed while every node was down fires at the next start. Firing marks the
dispute overdue (until its status moves), writes its history line and `dispute.sla_breached`
webhook in the claim's transaction, and records an audit entry as `system`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from parley import metrics
from parley.core.audit import SYSTEM, Target
from parley.features.disputes.service import Disputes
from parley.features.disputes.webhooks import WebhookSender
from parley.settings import Settings

log = logging.getLogger(__name__)


class DisputeScheduler:
    def __init__(self, *, settings: Settings, disputes: Disputes, webhooks: WebhookSender) -> None:
        self.settings = settings
        self.disputes = disputes
        self.webhooks = webhooks
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        disputes.on_change = self._wake.set

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="dispute-scheduler"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.webhooks.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
                delay = await self._until_next()
            except Exception as exc:  # the database may be restarting; try again shortly
                log.warning("dispute scheduler tick failed: %s", exc)
                delay = self.settings.dispute_scheduler_seconds
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, delay))

    async def tick(self) -> int:
        """Fire every passed deadline this node can claim, deliver due webhooks, export gauges.

        Returns how many deadlines this call fired.
        """
        at = self.disputes.clock()
        fired = await self.disputes.store.claim_breaches(
            at, actor=SYSTEM, payload=self.disputes.webhook_payload
        )
        for before, after in fired:
            metrics.DISPUTE_SLA_BREACHES.labels(before.status.value).inc()
            log.warning(
                "dispute %d is overdue: its %s SLA ended at %s",
                after.id,
                before.status,
                before.deadline_at,
            )
            await self.disputes.audit.record(
                SYSTEM,
                "dispute.sla_breached",
                Target.of("dispute", after.id),
                before={"status": before.status.value, "deadline_at": before.deadline_at},
                after={"status": after.status.value, "sla_breached_at": after.sla_breached_at},
                reason=f"the {before.status} SLA passed",
            )
            await self.disputes.publish_change(after, "sla_breached")
        await self.webhooks.deliver_due(self.disputes.clock())
        await self.disputes.counts()
        return len(fired)

    async def _until_next(self) -> float:
        """Seconds until the next deadline or due webhook, capped by the polling interval."""
        cap = self.settings.dispute_scheduler_seconds
        now = self.disputes.clock()
        moments = [await self.disputes.store.next_deadline()]
        if self.webhooks.enabled:
            moments.append(await self.disputes.store.next_webhook_at())
        waits = [(m - now).total_seconds() for m in moments if m is not None]
        return min([cap, *waits]) if waits else cap
