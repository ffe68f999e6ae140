"""The client's side of the P0 invariants: counters per transport, write receipts, reports.

A send's ack starts a clock; the message arriving on the stream stops it (`write_receipt_ms`).
A clock still running after `receipt_timeout` seconds counts one `ack_without_receipt_10s`.
Counts accumulate per transport; `take_reports` hands out what has not been reported yet, and
`restore` puts it back when the report could not be posted.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from parley.clients.models import TransportName

COUNTERS = (
    "ack_without_receipt_10s",
    "timeline_duplicate_detected",
    "read_rollback_detected",
    "forced_resyncs",
    "full_state_loads",
)
# Kept for `stats()`; bench runs read percentiles from here, reports carry every sample.
SAMPLES_KEPT = 100_000
# A report carries at most this many latencies; the rest wait for the next one.
SAMPLES_PER_REPORT = 1_000
UNREPORTED_SAMPLES_MAX = 50_000


def _zeroes() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


@dataclass
class TransportStats:
    """Everything counted while one transport was in use."""

    counters: dict[str, int] = field(default_factory=_zeroes)
    write_receipt_ms: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES_KEPT))
    acks: int = 0
    messages_received: int = 0

    def write_receipt_percentile_ms(self, percentile: float) -> float | None:
        """The given percentile (0 to 100) of the kept write-receipt latencies."""
        if not self.write_receipt_ms:
            return None
        ordered = sorted(self.write_receipt_ms)
        index = max(0, math.ceil(percentile / 100 * len(ordered)) - 1)
        return ordered[index]


@dataclass(frozen=True, slots=True)
class Report:
    """The body of one `POST /v1/stream/report`."""

    transport: TransportName
    counters: dict[str, int]
    write_receipt_ms: list[float]

    def to_json(self) -> dict[str, Any]:
        return {
            "transport": self.transport,
            "counters": self.counters,
            "write_receipt_ms": self.write_receipt_ms,
        }


@dataclass
class _Unreported:
    counters: dict[str, int] = field(default_factory=_zeroes)
    write_receipt_ms: list[float] = field(default_factory=list)

    def empty(self) -> bool:
        return not self.write_receipt_ms and not any(self.counters.values())


class Invariants:
    """Counters and write-receipt clocks of one client."""

    def __init__(
        self, receipt_timeout: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.receipt_timeout = receipt_timeout
        self._clock = clock
        self._stats: dict[TransportName, TransportStats] = {}
        self._unreported: dict[TransportName, _Unreported] = {}
        # (conversation_id, seq) -> (ack time, transport); insertion order is ack order.
        self._awaiting: dict[tuple[int, int], tuple[float, TransportName]] = {}

    def stats(self, transport: TransportName) -> TransportStats:
        found = self._stats.get(transport)
        if found is None:
            found = self._stats[transport] = TransportStats()
        return found

    def count(self, transport: TransportName, name: str, amount: int = 1) -> None:
        """Add to one of `COUNTERS`."""
        self.stats(transport).counters[name] += amount
        self._pending(transport).counters[name] += amount

    def acked(
        self, transport: TransportName, conversation_id: int, seq: int, *, on_stream: bool
    ) -> None:
        """Start the write-receipt clock, or record 0 ms when the stream was first."""
        self.stats(transport).acks += 1
        if on_stream:
            self._sample(transport, 0.0)
        else:
            self._awaiting[conversation_id, seq] = (self._clock(), transport)

    def received(self, transport: TransportName, conversation_id: int, seq: int) -> None:
        """A message arrived on the stream; stops its write-receipt clock if one runs."""
        self.stats(transport).messages_received += 1
        if not self._awaiting:
            return
        started = self._awaiting.pop((conversation_id, seq), None)
        if started is not None:
            self._sample(started[1], (self._clock() - started[0]) * 1000)

    def expire(self) -> int:
        """Count acks whose message has not come back within `receipt_timeout`."""
        deadline = self._clock() - self.receipt_timeout
        expired = []
        for key, (at, _) in self._awaiting.items():
            if at > deadline:
                break  # insertion order is ack order: the rest are younger
            expired.append(key)
        for key in expired:
            _, transport = self._awaiting.pop(key)
            self.count(transport, "ack_without_receipt_10s")
        return len(expired)

    @property
    def awaiting_receipt(self) -> int:
        return len(self._awaiting)

    def snapshot(self) -> dict[TransportName, TransportStats]:
        return dict(self._stats)

    def take_reports(self) -> list[Report]:
        """The unreported deltas, one report per transport that has any."""
        reports = []
        for transport, pending in list(self._unreported.items()):
            if pending.empty():
                continue
            samples = pending.write_receipt_ms[:SAMPLES_PER_REPORT]
            del pending.write_receipt_ms[:SAMPLES_PER_REPORT]
            reports.append(Report(transport, dict(pending.counters), samples))
            pending.counters = _zeroes()
        return reports

    def restore(self, report: Report) -> None:
        """Give back a report that could not be posted, so the next one carries it."""
        pending = self._pending(report.transport)
        for name, amount in report.counters.items():
            pending.counters[name] = pending.counters.get(name, 0) + amount
        pending.write_receipt_ms[:0] = report.write_receipt_ms
        del pending.write_receipt_ms[UNREPORTED_SAMPLES_MAX:]

    def _sample(self, transport: TransportName, ms: float) -> None:
        self.stats(transport).write_receipt_ms.append(ms)
        samples = self._pending(transport).write_receipt_ms
        if len(samples) < UNREPORTED_SAMPLES_MAX:
            samples.append(round(ms, 3))

    def _pending(self, transport: TransportName) -> _Unreported:
        found = self._unreported.get(transport)
        if found is None:
            found = self._unreported[transport] = _Unreported()
        return found
