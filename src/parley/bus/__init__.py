"""Fan-out between nodes: `memory` (one process) and `redis` (production), one Bus protocol."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from parley.realtime.envelope import Envelope

Deliver = Callable[[list[Envelope]], None]


class Bus(Protocol):
    """Carries committed events to the other nodes' hubs.

    The publishing node hands its own events to its hub directly; the bus only has to reach the
    others, and may lose messages (the hubs fill position gaps from the database).
    """

    node_id: str

    @property
    def healthy(self) -> bool: ...

    async def start(self, deliver: Deliver) -> None: ...

    async def publish(self, envelopes: list[Envelope]) -> None: ...

    async def stop(self) -> None: ...
