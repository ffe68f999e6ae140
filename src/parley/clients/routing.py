"""Where the client's next connection goes: which node, which transports in which order, when.

The rules (the browser client's, static/client.js):
- a connection *round* tries the transports in order (ws → sse → poll, or the preferred one
  alone without fallback) until one says `hello`, all within one budget (3 s by default): an
  attempt gets two thirds of it at most, and later ones what is left, less a reserve for each
  still to try, so even hanging transports leave the last one its turn inside the budget;
- a round that fails backs off (exponential, with jitter) and moves to the next base URL;
- after a drop, the transport that was working is tried first again;
- a node that drains (1012, `control reconnect`) sends the client at once to the next URL;
- while the server says `sse_only` (close 4003, `control transport`, `hello.mode`), rounds
  leave WebSocket out, fallback or not, until a `hello` or `control` says `auto` again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from parley.clients.models import TRANSPORT_CHAIN, TransportName
from parley.clients.streams import Next, StreamEnded

ATTEMPT_SHARE = 2 / 3
ATTEMPT_RESERVE = 0.5  # seconds kept back for each transport still to try in a round


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: between half and all of `base * 2**(attempt-1)`."""
    delay = min(cap, base * 2.0 ** min(max(0, attempt - 1), 16))
    return delay / 2 + random.random() * delay / 2


class Route:
    """The node and transports to try next, and the reconnect/fallback counts."""

    def __init__(
        self,
        base_urls: Sequence[str],
        transport: TransportName,
        *,
        fallback: bool,
        delay: float,
        delay_max: float,
    ) -> None:
        if not base_urls:
            raise ValueError("at least one base URL is needed")
        if transport not in TRANSPORT_CHAIN:
            raise ValueError(f"transport must be one of {TRANSPORT_CHAIN}, not {transport!r}")
        self.base_urls = list(base_urls)
        self.preferred: TransportName = transport
        self.transport: TransportName = transport  # the one in use, or last used
        self.fallback = fallback
        self.delay = delay
        self.delay_max = delay_max
        self.sse_only = False
        self.reconnects = 0
        self.fallbacks = 0
        self._working: TransportName | None = None
        self._index = 0

    @property
    def base_url(self) -> str:
        return self.base_urls[self._index]

    def round(self) -> list[TransportName]:
        """The transports the next round tries, in order."""
        chain = TRANSPORT_CHAIN[TRANSPORT_CHAIN.index(self.preferred) :]
        names = list(chain if self.fallback else chain[:1])
        if self.sse_only:
            names = [name for name in names if name != "ws"] or ["sse"]
        if self._working in names:
            names.remove(self._working)
            names.insert(0, self._working)
        return names

    @staticmethod
    def attempt_timeout(budget_left: float, still_to_try: int, budget: float) -> float:
        """How long one attempt may take to say hello, so the round keeps to its budget."""
        longest = budget * ATTEMPT_SHARE
        if still_to_try == 0:
            return longest
        return max(min(longest, budget_left - still_to_try * ATTEMPT_RESERVE), ATTEMPT_RESERVE)

    def connected(self, transport: TransportName) -> None:
        """A transport said hello: it is the one in use, and the first to try after a drop."""
        if transport != self.transport:
            self.fallbacks += transport != self.preferred
            self.transport = transport
        self._working = transport

    def after_end(self, ended: StreamEnded, failures: int) -> float:
        """Get ready to reconnect after a stream ended; returns how long to wait first."""
        self.reconnects += 1
        if ended.next is Next.USE_SSE:
            self.sse_only = True
            return 0.0
        if ended.next is Next.WAIT:
            return (ended.retry_after or 1.0) + random.random() * 0.5
        if ended.next is Next.FAILOVER:
            self._rotate()
            return random.random() * self.delay
        if ended.next is Next.RESYNC:
            return 0.0 if failures <= 1 else backoff_delay(failures, self.delay, self.delay_max)
        return backoff_delay(failures, self.delay, self.delay_max)

    def after_failed_round(self, failures: int) -> float:
        """No transport connected: back off, then try the next node from the top."""
        self._working = None
        self._rotate()
        return backoff_delay(failures, self.delay, self.delay_max)

    def note_mode(self, mode: object) -> None:
        """Take the transport mode a `hello` or `control` announced."""
        if mode in ("auto", "sse_only"):
            self.sse_only = mode == "sse_only"

    def _rotate(self) -> None:
        self._index = (self._index + 1) % len(self.base_urls)
