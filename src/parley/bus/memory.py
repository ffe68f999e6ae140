"""MemoryBus: the embedded default. One process, so there is no other node to reach."""

from __future__ import annotations

import uuid

from parley.bus import Deliver
from parley.realtime.envelope import Envelope


class MemoryBus:
    def __init__(self) -> None:
        self.node_id = uuid.uuid4().hex[:12]
        self._deliver: Deliver | None = None

    @property
    def healthy(self) -> bool:
        return True

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def publish(self, envelopes: list[Envelope]) -> None:
        return None  # the publishing node's hub already has them

    async def stop(self) -> None:
        self._deliver = None
