"""Safety loops: background tasks that must keep running and must say so when they break.

Every failed iteration counts on `/metrics` as `parley_background_errors_total{loop}` (the alert
`ParleySafetyLoopFailing` pages on repeats). Its traceback is logged once: a failure like the
previous one (same type and message) logs one line with a running count instead of another
traceback, and the first success after failures says how many there were.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from parley import metrics

log = logging.getLogger(__name__)

# The loops that report here; their counters exist (at 0) from the start, so an alert's
# `increase()` sees the first failure too.
LOOPS = (
    "release_watcher",
    "release_final_flush",
    "hub_gap_fill",
    "stream_head_poll",
    "presence_refresh",
    "bus_publish",
    "message_writer",
    "storage_watch",
)


class LoopHealth:
    """One safety loop's failure reporting."""

    def __init__(self, loop: str, logger: logging.Logger | None = None) -> None:
        self.loop = loop
        self.failures = 0
        self._log = logger or log
        self._last: tuple[type[BaseException], str] | None = None
        self._counter = metrics.BACKGROUND_ERRORS.labels(loop)

    def failed(self, exc: BaseException, what: str = "") -> None:
        self.failures += 1
        self._counter.inc()
        signature = (type(exc), str(exc))
        doing = f" ({what})" if what else ""
        if signature != self._last:
            self._last = signature
            self._log.error("safety loop %s failed%s", self.loop, doing, exc_info=exc)
        else:
            self._log.warning(
                "safety loop %s failed again%s (%d in a row): %r",
                self.loop,
                doing,
                self.failures,
                exc,
            )

    def succeeded(self) -> None:
        if self.failures:
            self._log.info("safety loop %s recovered after %d failures", self.loop, self.failures)
        self.failures = 0
        self._last = None


async def run_forever(
    health: LoopHealth, iteration: Callable[[], Awaitable[None]], *, backoff: float = 1.0
) -> None:
    """Run `iteration` again and again; a failure is reported and retried after `backoff` s."""
    while True:
        try:
            await iteration()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            health.failed(exc)
            await asyncio.sleep(backoff)
        else:
            health.succeeded()


for _loop in LOOPS:
    metrics.BACKGROUND_ERRORS.labels(_loop)
