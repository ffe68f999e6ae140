"""Exports as people ask for them: request, follow, download; and the runner that builds them.

Who may export what:
- a conversation: its members, admins, and its live-chat staff (inbox/branch operators);
- a person's own data: that person (`/v1/me/export`), or an admin acting on a request
  made by e-mail (`parley privacy export`, `POST /v1/admin/users/{id}/export`).
Only the requester (or an admin) reads a job or downloads its file; anyone else gets 404.
Every request and download is in the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from parley import metrics
from parley.core.audit import Target
from parley.core.errors import Conflict, ErrorCode, NotFound
from parley.core.exports import ExportJob, ExportKind, ExportStatus
from parley.core.models import Role, User
from parley.core.ports import BlobStore
from parley.features.export.builder import PackageBuilder
from parley.services.audit import AuditLog
from parley.services.timeline import Timeline
from parley.storage.exports import ExportStore

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
StaffAccess = Callable[[User, int], Awaitable[object]]
HEARTBEAT_SECONDS = 5.0
STALE_AFTER = timedelta(seconds=60)  # a runner quiet this long is presumed dead
IDLE_POLL_SECONDS = 5.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ExportFile:
    job: ExportJob
    path: Path


class Exports:
    def __init__(
        self,
        *,
        store: ExportStore,
        blobs: BlobStore,
        timeline: Timeline,
        audit: AuditLog,
        directory: Path,
        keep_hours: int,
        node: str,
        staff_access: StaffAccess | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.store = store
        self.timeline = timeline
        self.audit = audit
        self.directory = directory
        self.keep = timedelta(hours=keep_hours)
        self.node = node
        self.staff_access = staff_access
        self.clock = clock
        self.builder = PackageBuilder(store, blobs, clock)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- asking ----------------------------------------------------------------------------------

    async def access_conversation(self, actor: User, conversation_id: int) -> None:
        """Members, admins and the conversation's live-chat staff; 404 for anyone else."""
        if actor.role is Role.ADMIN:
            if await self.store.get_conversation(conversation_id) is None:
                raise NotFound("no such conversation")
            return
        try:
            await self.timeline.access_conversation(actor, conversation_id)
            return
        except NotFound:
            if self.staff_access is None:
                raise
        await self.staff_access(actor, conversation_id)

    async def do_request_conversation(self, actor: User | str, conversation_id: int) -> ExportJob:
        """Queue a conversation export (callers have run `access_conversation`)."""
        return await self._request(actor, ExportKind.CONVERSATION, conversation_id)

    async def do_request_person(
        self, actor: User | str, user_id: int, *, reason: str = ""
    ) -> ExportJob:
        """Queue the export of everything about `user_id` (the person, or an admin for them)."""
        return await self._request(actor, ExportKind.PERSON, user_id, reason=reason)

    async def _request(
        self, actor: User | str, kind: ExportKind, subject_id: int, *, reason: str = ""
    ) -> ExportJob:
        now = self.clock()
        job = await self.store.add_job(
            {
                "id": "exp_" + secrets.token_urlsafe(18),
                "kind": kind.value,
                "subject_id": subject_id,
                "requested_by": actor.id if isinstance(actor, User) else None,
                "requested_by_name": actor.name if isinstance(actor, User) else actor,
                "status": ExportStatus.QUEUED.value,
                "params": {"reason": reason} if reason else {},
                "created_at": now,
            }
        )
        action = "export.request" if kind is ExportKind.CONVERSATION else "privacy.export_request"
        target = Target.of(
            "conversation" if kind is ExportKind.CONVERSATION else "user", subject_id
        )
        await self.audit.record(actor, action, target, after={"export_id": job.id}, reason=reason)
        metrics.EXPORTS.labels(kind.value, "requested").inc()
        self._wake.set()
        return job

    async def access_job(self, actor: User, job_id: str) -> ExportJob:
        """The job if `actor` asked for it or is an admin; 404 otherwise, alike."""
        job = await self.store.get_job(job_id)
        if job is None or (actor.role is not Role.ADMIN and job.requested_by != actor.id):
            raise NotFound("no such export")
        return job

    async def latest_person_export(self, actor: User) -> ExportJob | None:
        job = await self.store.latest_job(ExportKind.PERSON, actor.id)
        return job if job is not None and job.requested_by == actor.id else None

    async def open_download(self, actor: User | str, job: ExportJob) -> ExportFile:
        """The finished file (409 while it is being made, 404 once it has expired)."""
        if job.status in (ExportStatus.QUEUED, ExportStatus.RUNNING):
            raise Conflict(
                f"the export is {job.status.value} ({job.done}/{job.total}); try again shortly",
                ErrorCode.EXPORT_NOT_READY,
            )
        path = self.path_of(job)
        if job.status is ExportStatus.FAILED or not path.exists():
            raise NotFound("the export failed or has expired; ask for a new one")
        await self.audit.record(
            actor,
            "export.download" if job.kind is ExportKind.CONVERSATION else "privacy.export_download",
            Target.of("export", job.id),
            after={"kind": job.kind.value, "subject_id": job.subject_id, "sha256": job.sha256},
        )
        return ExportFile(job, path)

    def path_of(self, job: ExportJob) -> Path:
        return self.directory / f"{job.id}.zip"

    def remove_file(self, export_id: str) -> None:
        """Delete a package now (its person was erased): the job stays, its file is gone."""
        (self.directory / f"{export_id}.zip").unlink(missing_ok=True)

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._run_forever(), name="export-runner")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run_forever(self) -> None:
        while True:
            try:
                while await self.run_next():
                    pass
                await self.delete_expired()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the export runner failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), IDLE_POLL_SECONDS)

    async def run_next(self) -> ExportJob | None:
        """Claim and build one job; None when there was nothing to do."""
        now = self.clock()
        job = await self.store.claim_job(self.node, now, now - STALE_AFTER)
        if job is None:
            return None
        return await self.run(job)

    async def run(
        self, job: ExportJob, on_progress: Callable[[int, int], None] | None = None
    ) -> ExportJob:
        """Build `job`'s package now (the runner, or the CLI in the foreground)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_of(job)
        beat = asyncio.create_task(self._heartbeat(job.id))

        async def progress(done: int, total: int) -> None:
            if on_progress is not None:
                on_progress(done, total)
            await self.store.update_job(job.id, {"done": done, "total": total})

        try:
            await self.builder.build(job, path, progress)
        except Exception as exc:
            log.warning("export %s failed: %s", job.id, exc)
            await self.store.update_job(
                job.id,
                {
                    "status": ExportStatus.FAILED.value,
                    "error": str(exc)[:500],
                    "finished_at": self.clock(),
                },
            )
            metrics.EXPORTS.labels(job.kind.value, "failed").inc()
        else:
            size, digest = await asyncio.to_thread(_size_and_sha256, path)
            finished = self.clock()
            await self.store.update_job(
                job.id,
                {
                    "status": ExportStatus.DONE.value,
                    "size": size,
                    "sha256": digest,
                    "finished_at": finished,
                    "expires_at": finished + self.keep,
                },
            )
            metrics.EXPORTS.labels(job.kind.value, "done").inc()
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
        return await self.store.get_job(job.id) or job

    async def _heartbeat(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await self.store.update_job(job_id, {"heartbeat_at": self.clock()})

    async def delete_expired(self) -> int:
        """Files past their keep time go, and so do their jobs."""
        expired = await self.store.list_expired_jobs(self.clock())
        for job in expired:
            self.path_of(job).unlink(missing_ok=True)
        await self.store.delete_jobs([job.id for job in expired])
        return len(expired)


def _size_and_sha256(path: Path) -> tuple[int, str]:
    import hashlib

    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
