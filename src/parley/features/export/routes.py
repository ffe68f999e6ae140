"""Export REST: ask for a conversation's package or your own data, follow the job, download.

Roles: a conversation export — its members, admins, its live-chat staff; your own data —
yourself (`/v1/me/export`); someone else's data — admins (`/v1/admin/users/{id}/export`).
A job and its file — only who asked for it, or an admin (404 for anyone else).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.routes.conversations import ConversationId
from parley.api.schemas import Input, Text
from parley.core.errors import Forbidden, NotFound
from parley.core.exports import ExportJob, ExportStatus
from parley.core.limits import SEQ_MAX
from parley.core.models import Role
from parley.features.export.service import ExportFile

router = APIRouter(tags=["export"])

JobId = Annotated[str, Path(min_length=5, max_length=40, pattern=r"^exp_[A-Za-z0-9_-]+$")]
UserId = Annotated[int, Path(ge=1, le=SEQ_MAX)]
RETRY_AFTER_SECONDS = 2


class ExportOut(BaseModel):
    id: str
    kind: str = Field(description="conversation | person")
    subject_id: int
    status: str = Field(description="queued | running | done | failed")
    done: int = Field(description="Messages written so far (progress).")
    total: int = Field(description="Messages to write (progress).")
    size: int | None
    sha256: str | None = Field(description="SHA-256 of the ZIP, once done.")
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    expires_at: datetime | None
    download_url: str | None

    @classmethod
    def of(cls, job: ExportJob) -> ExportOut:
        done = job.status is ExportStatus.DONE
        return cls(
            id=job.id,
            kind=job.kind.value,
            subject_id=job.subject_id,
            status=job.status.value,
            done=job.done,
            total=job.total,
            size=job.size,
            sha256=job.sha256,
            error=job.error,
            created_at=job.created_at,
            finished_at=job.finished_at,
            expires_at=job.expires_at,
            download_url=f"/v1/exports/{job.id}/download" if done else None,
        )


class AdminExportIn(Input):
    reason: Text(500, min_length=1) = Field(  # type: ignore[valid-type]
        description="Why, for the audit log (e.g. the e-mail request's reference)."
    )


@router.post("/v1/conversations/{conversation_id}/exports", status_code=202)
async def request_conversation_export(
    conversation_id: ConversationId, user: CurrentUser, services: ServicesDep
) -> ExportOut:
    """Queue the conversation's package (README, messages.csv, attachments/, metadata.json).
    Members, admins and the conversation's live-chat staff."""
    await services.exports.access_conversation(user, conversation_id)
    return ExportOut.of(await services.exports.do_request_conversation(user, conversation_id))


@router.get("/v1/exports/{export_id}")
async def get_export(export_id: JobId, user: CurrentUser, services: ServicesDep) -> ExportOut:
    """The job's status and progress (who asked for it, or admins)."""
    return ExportOut.of(await services.exports.access_job(user, export_id))


@router.get(
    "/v1/exports/{export_id}/download",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}}, 409: {"description": "Not ready"}},
)
async def download_export(
    export_id: JobId, user: CurrentUser, services: ServicesDep
) -> FileResponse:
    """The finished ZIP (who asked for it, or admins); 409 ERR_EXPORT_NOT_READY before."""
    job = await services.exports.access_job(user, export_id)
    return _file(await services.exports.open_download(user, job))


@router.get(
    "/v1/me/export",
    responses={
        200: {"content": {"application/zip": {}}, "description": "Your data, ready"},
        202: {"model": ExportOut, "description": "Being made: ask again after Retry-After"},
    },
)
async def my_export(user: CurrentUser, services: ServicesDep, response: Response) -> object:
    """Your own data across every conversation, as one ZIP. The first call starts making it
    (202 with Retry-After); ask again until it answers 200 with the file."""
    job = await services.exports.latest_person_export(user)
    if job is None or _stale(job, services.exports.path_of(job).exists()):
        job = await services.exports.do_request_person(user, user.id)
    if job.status is ExportStatus.DONE:
        return _file(await services.exports.open_download(user, job))
    response.status_code = 202
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return ExportOut.of(job)


@router.post("/v1/me/export", status_code=202)
async def refresh_my_export(user: CurrentUser, services: ServicesDep) -> ExportOut:
    """Make a fresh export of your data (the previous one stays until it expires)."""
    return ExportOut.of(await services.exports.do_request_person(user, user.id))


@router.post("/v1/admin/users/{user_id}/export", status_code=202, tags=["admin"])
async def admin_person_export(
    user_id: UserId, body: AdminExportIn, user: CurrentUser, services: ServicesDep
) -> ExportOut:
    """Admins: export a person's data for a request made outside the app (e-mail, post)."""
    if user.role is not Role.ADMIN:
        raise Forbidden("only admins export another person's data")
    if await services.identity.users.get_user(user_id) is None:
        raise NotFound("no such user")
    return ExportOut.of(await services.exports.do_request_person(user, user_id, reason=body.reason))


def _stale(job: ExportJob, file_exists: bool) -> bool:
    return job.status is ExportStatus.FAILED or (
        job.status is ExportStatus.DONE and not file_exists
    )


def _file(found: ExportFile) -> FileResponse:
    return FileResponse(
        found.path,
        media_type="application/zip",
        filename=found.job.file_name,
        headers={"X-Content-SHA256": found.job.sha256 or "", "Cache-Control": "no-store"},
    )
