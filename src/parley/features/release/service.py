"""Release: the control plane's parts for one process — flags, rollout, samples, watcher.

Built by `parley/assembly.py`; `start()` (serving processes only) hooks the client reports
and starts the watcher. The CLI builds it too and works on the database directly; the serving
nodes announce what it changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from parley.features.release.flags import FlagService
from parley.features.release.probe import ProbeConversations
from parley.features.release.rollout import Clock, Rollout, utc_now
from parley.features.release.samples import SampleRecorder
from parley.features.release.watcher import ReleaseWatcher
from parley.services.attachments import Attachments
from parley.services.audit import AuditLog
from parley.services.stream import StreamService
from parley.settings import Settings
from parley.storage.database import Database
from parley.storage.flags import FlagStore
from parley.storage.probes import ProbeStore
from parley.storage.release import ReleaseStore
from parley.storage.users import UserStore


@dataclass
class Release:
    flags: FlagService
    rollout: Rollout
    recorder: SampleRecorder
    watcher: ReleaseWatcher
    stream: StreamService
    probe: ProbeConversations

    @classmethod
    def build(
        cls,
        settings: Settings,
        db: Database,
        *,
        stream: StreamService,
        users: UserStore,
        audit: AuditLog,
        attachments: Attachments,
        clock: Clock = utc_now,
    ) -> Release:
        flag_store, release_store = FlagStore(db), ReleaseStore(db)
        flags = FlagService(flag_store, users, stream, audit)
        recorder = SampleRecorder(
            store=release_store,
            flags=flag_store,
            users=users,
            node=stream.bus.node_id,
            clock=clock,
        )
        rollout = Rollout(
            settings=settings,
            store=release_store,
            flags=flags,
            audit=audit,
            clock=clock,
            flush=recorder.flush,
        )
        watcher = ReleaseWatcher(settings=settings, rollout=rollout, recorder=recorder)
        probe = ProbeConversations(attachments.timeline, ProbeStore(db), attachments)
        return cls(
            flags=flags,
            rollout=rollout,
            recorder=recorder,
            watcher=watcher,
            stream=stream,
            probe=probe,
        )

    async def start(self) -> None:
        self.stream.on_report = self.recorder.take_report
        self.watcher.start()

    async def stop(self) -> None:
        self.stream.on_report = None
        await self.watcher.stop()
