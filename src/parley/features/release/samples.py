"""The gates' raw material: client reports tagged with their cohort, and each node's counts.

Prometheus counters cannot be split by cohort, so every client report (handed over by
`StreamService.record_report`'s hook) is also stored with its user's cohort at arrival: canary
if the release flag is on for that user, baseline otherwise. Server-side counts (requests, 5xx,
stream opens, resync errors) are not per user; each node stores its deltas every tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Metric

from parley import metrics
from parley.core.errors import ErrorCode
from parley.core.flags import RELEASE_FLAG, Flag, FlagContext, evaluate
from parley.core.rollout import P0_COUNTERS
from parley.features.release.gates import BASELINE, CANARY
from parley.services.stream import ReportSender
from parley.storage.flags import FlagStore
from parley.storage.release import ReleaseStore
from parley.storage.users import UserStore

log = logging.getLogger(__name__)

# Reports waiting for the next flush beyond this are dropped (the database is down for long).
MAX_PENDING = 50_000


@dataclass(frozen=True, slots=True)
class PendingReport:
    at: datetime
    user_id: int
    transport: str
    counters: dict[str, int]
    write_receipt_ms: list[float]
    token_id: int | None = None
    client_ip: str = ""


class SampleRecorder:
    def __init__(
        self,
        *,
        store: ReleaseStore,
        flags: FlagStore,
        users: UserStore,
        node: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.flags = flags
        self.users = users
        self.node = node
        self.p0_seen = asyncio.Event()
        self._pending: list[PendingReport] = []
        self._last_totals: dict[str, int] | None = None
        self._clock = clock

    def take_report(
        self,
        sender: ReportSender,
        transport: str,
        counters: dict[str, int],
        write_receipt_ms: list[float],
    ) -> None:
        """StreamService's hook (sync, on the request path): queue the report for the flush."""
        if len(self._pending) >= MAX_PENDING:
            return
        self._pending.append(
            PendingReport(
                self._clock(),
                sender.user_id,
                transport,
                counters,
                write_receipt_ms,
                token_id=sender.token_id,
                client_ip=sender.client_ip[:45],
            )
        )
        if any(counters.get(name) for name in P0_COUNTERS):
            self.p0_seen.set()  # the watcher looks now, not at its next tick

    async def flush(self) -> int:
        """Store the queued reports with their cohorts; returns how many."""
        pending, self._pending = self._pending, []
        if not pending:
            return 0
        try:
            release = await self.flags.get_flag(RELEASE_FLAG)
            contexts = await self._contexts({report.user_id for report in pending})
            await self.store.add_client_reports(
                [_row(report, _cohort(release, contexts.get(report.user_id))) for report in pending]
            )
        except Exception:
            self._pending[:0] = pending[: MAX_PENDING - len(self._pending)]
            raise
        return len(pending)

    async def _contexts(self, user_ids: set[int]) -> dict[int, FlagContext]:
        contexts = {}
        for user_id in user_ids:
            user = await self.users.get_user(user_id)
            if user is not None:
                contexts[user_id] = FlagContext(
                    user_id=user.id, role=user.role.value, internal=user.internal
                )
        return contexts

    async def sample_server(self, at: datetime) -> None:
        """Store this node's counts since the last call (the first call only sets the mark)."""
        totals = server_totals()
        last, self._last_totals = self._last_totals, totals
        if last is None:
            return
        delta = {name: max(0, totals[name] - last.get(name, 0)) for name in totals}
        if any(delta.values()):
            await self.store.add_server_sample({"at": at, "node": self.node, **delta})


def _cohort(release: Flag | None, context: FlagContext | None) -> str:
    if release is None or context is None:
        return BASELINE
    return CANARY if evaluate(release, context).value else BASELINE


def _row(report: PendingReport, cohort: str) -> dict[str, Any]:
    return {
        "at": report.at,
        "user_id": report.user_id,
        "cohort": cohort,
        "transport": report.transport,
        "counters": report.counters,
        "write_receipt_ms": report.write_receipt_ms,
        "token_id": report.token_id,
        "client_ip": report.client_ip or None,
    }


def server_totals() -> dict[str, int]:
    """This process's request, 5xx, stream-open, resync-error, send and stall counts so far."""
    requests = errors = 0
    for sample in _samples(metrics.HTTP_REQUEST_SECONDS.collect(), "_count"):
        requests += int(sample.value)
        # Maintenance mode answers 503 on purpose: not an error of the release.
        if (
            sample.labels.get("status", "").startswith("5")
            and sample.labels.get("route") != "maintenance"
        ):
            errors += int(sample.value)
    opens = sum(int(s.value) for s in _samples(metrics.STREAM_OPENS.collect(), "_total"))
    resync = {ErrorCode.RESYNC_RANGE_UNAVAILABLE.value: 0, ErrorCode.RESYNC_THROTTLED.value: 0}
    for sample in _samples(metrics.RESYNC_ERRORS.collect(), "_total"):
        code = sample.labels.get("code", "")
        if code in resync:
            resync[code] += int(sample.value)
    sends = stalls = 0
    for sample in _samples(metrics.SENDS.collect(), "_total"):
        sends += int(sample.value)
        if sample.labels.get("outcome") != "ok":
            stalls += int(sample.value)
    return {
        "requests": requests,
        "errors_5xx": errors,
        "stream_opens": opens,
        "resync_range_unavailable": resync[ErrorCode.RESYNC_RANGE_UNAVAILABLE.value],
        "resync_throttled": resync[ErrorCode.RESYNC_THROTTLED.value],
        "sends": sends,
        "send_stalls": stalls,
    }


def _samples(families: list[Metric], suffix: str) -> list[Any]:
    return [s for family in families for s in family.samples if s.name.endswith(suffix)]
