"""HTTP surface of the release control plane: `/v1/flags`, `/v1/admin/flags`,
`/v1/admin/release/...` (admins only) and the admin page `/admin/release`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.schemas import Input
from parley.core.flags import Flag
from parley.core.models import User
from parley.features.release.flags import check_admin
from parley.features.release.gates import GateReport
from parley.features.release.probe import KEEP_MESSAGES
from parley.features.release.rollout import entry_json, state_json

router = APIRouter(tags=["release"])

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
StableKey = Annotated[str | None, Query(max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]


async def admin_user(user: CurrentUser) -> User:
    check_admin(user)
    return user


AdminUser = Annotated[User, Depends(admin_user)]


# -- flags ------------------------------------------------------------------------------------


class EvaluationOut(BaseModel):
    value: bool
    reason: str


class FlagsOut(BaseModel):
    flags: dict[str, EvaluationOut]


class FlagOut(BaseModel):
    key: str
    description: str
    enabled: bool
    internal_only: bool
    percentage: int | None
    stickiness: str
    group: str
    allow_users: list[int]
    allow_keys: list[str]
    roles: list[str]
    updated_at: str | None
    updated_by: str

    @classmethod
    def of(cls, flag: Flag) -> FlagOut:
        return cls(
            key=flag.key,
            description=flag.description,
            enabled=flag.enabled,
            internal_only=flag.internal_only,
            percentage=flag.percentage,
            stickiness=flag.stickiness.value,
            group=flag.bucket_group,
            allow_users=sorted(flag.allow_users),
            allow_keys=sorted(flag.allow_keys),
            roles=sorted(flag.roles),
            updated_at=flag.updated_at.isoformat().replace("+00:00", "Z")
            if flag.updated_at
            else None,
            updated_by=flag.updated_by,
        )


class FlagChangeIn(Input):
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None
    internal_only: bool | None = None
    percentage: int | None = Field(default=None, ge=0, le=100)
    stickiness: Literal["user", "contract", "inbox", "room"] | None = None
    group: str | None = Field(default=None, max_length=64)
    allow_users: list[int] | None = Field(default=None, max_length=1000)
    allow_keys: list[Annotated[str, Field(max_length=128)]] | None = Field(
        default=None, max_length=1000
    )
    roles: list[str] | None = Field(default=None, max_length=10)
    # `percentage: null` means "no percentage rule"; say so explicitly, since null also means
    # "unchanged" for the other fields.
    clear_percentage: bool = False


@router.get("/v1/flags", response_model=FlagsOut)
async def my_flags(
    user: CurrentUser,
    services: ServicesDep,
    contract: StableKey = None,
    inbox: StableKey = None,
    room: StableKey = None,
    as_user: Annotated[int | None, Query(ge=1)] = None,
) -> FlagsOut:
    """Every flag's value for you (or, admins only, for `as_user`), with the reason.

    Percentage flags bucket by a stable key: your user id, or the `contract`, `inbox` or
    `room` given here.
    """
    release = services.release
    subject = await release.flags.access_subject(user, as_user)
    keys = {k: v for k, v in {"contract": contract, "inbox": inbox, "room": room}.items() if v}
    evaluations = await release.flags.evaluate_for(subject, keys)
    return FlagsOut(
        flags={
            key: EvaluationOut(value=e.value, reason=e.reason.value)
            for key, e in evaluations.items()
        }
    )


@router.get("/v1/admin/flags", response_model=list[FlagOut], tags=["admin"])
async def list_flags(user: AdminUser, services: ServicesDep) -> list[FlagOut]:
    return [FlagOut.of(flag) for flag in await services.release.flags.list_flags()]


@router.put("/v1/admin/flags/{key}", response_model=FlagOut, tags=["admin"])
async def change_flag(
    key: Annotated[str, Path(max_length=64)],
    body: FlagChangeIn,
    user: AdminUser,
    services: ServicesDep,
) -> FlagOut:
    """Change a flag's rules; clients get `flags.updated`."""
    changes = body.model_dump(exclude_none=True, exclude={"clear_percentage"})
    if body.clear_percentage:
        changes["percentage"] = None
    return FlagOut.of(await services.release.flags.do_update_flag(user, key, changes))


# -- rollout ----------------------------------------------------------------------------------


class MoveIn(Input):
    reason: str = Field(default="", max_length=500)
    owner: str = Field(default="", max_length=64)


class PromoteIn(MoveIn):
    override: bool = False


def _answer(state: Any, gates: GateReport) -> dict[str, Any]:
    return {"state": state_json(state), "gates": gates.snapshot()}


@router.get("/v1/admin/release", tags=["admin"])
async def release_state(user: AdminUser, services: ServicesDep) -> dict[str, Any]:
    """The rollout state: stage, percentage, kill switch, reason, actor, times."""
    return state_json(await services.release.rollout.get_state())


@router.get("/v1/admin/release/gates", tags=["admin"])
async def release_gates(user: AdminUser, services: ServicesDep) -> dict[str, Any]:
    """gate_p0_ok, gate_p1_ok, gate_rollout_ok, rollout_decision, reasons and every value."""
    return (await services.release.rollout.compute_gates()).snapshot()


@router.post("/v1/admin/release/promote", tags=["admin"])
async def release_promote(
    body: PromoteIn, user: AdminUser, services: ServicesDep
) -> dict[str, Any]:
    """One stage forward; 409 ERR_GATES_NOT_PASSED unless PROCEED (or `override`, logged)."""
    return _answer(
        *await services.release.rollout.do_promote(
            user, owner=body.owner, reason=body.reason, override=body.override
        )
    )


@router.post("/v1/admin/release/hold", tags=["admin"])
async def release_hold(body: MoveIn, user: AdminUser, services: ServicesDep) -> dict[str, Any]:
    """Back to canary_1, kill switch untouched."""
    return _answer(*await services.release.rollout.do_hold(user, reason=body.reason))


@router.post("/v1/admin/release/kill", tags=["admin"])
async def release_kill(body: MoveIn, user: AdminUser, services: ServicesDep) -> dict[str, Any]:
    """Back to canary_1 with the kill switch on: the release is off for everyone."""
    return _answer(*await services.release.rollout.do_kill(user, reason=body.reason))


@router.post("/v1/admin/release/resume", tags=["admin"])
async def release_resume(body: MoveIn, user: AdminUser, services: ServicesDep) -> dict[str, Any]:
    """Kill switch off again, at canary_1."""
    return _answer(
        *await services.release.rollout.do_resume(user, reason=body.reason, owner=body.owner)
    )


@router.post("/v1/admin/release/abort", tags=["admin"])
async def release_abort(body: MoveIn, user: AdminUser, services: ServicesDep) -> dict[str, Any]:
    """The release off entirely (stage off, 0 %)."""
    return _answer(*await services.release.rollout.do_abort(user, reason=body.reason))


@router.get("/v1/admin/release/history", tags=["admin"])
async def release_history(
    user: AdminUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[dict[str, Any]]:
    """The decision log, newest first."""
    return [entry_json(e) for e in await services.release.rollout.list_history(limit)]


@router.get("/v1/admin/release/export", tags=["admin"])
async def release_export(user: AdminUser, services: ServicesDep) -> dict[str, Any]:
    """State, gates and the whole decision log in one JSON document."""
    return await services.release.rollout.export()


class TrimIn(Input):
    conversation_id: int = Field(ge=1, le=2**53)
    keep_messages: int = Field(default=KEEP_MESSAGES, ge=0, le=10_000)


@router.post("/v1/release/probe/trim")
async def trim_probe(body: TrimIn, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """Trim your Go/No-Go probe conversation to its newest messages (its creator only)."""
    trimmed = await services.release.probe.do_trim(user, body.conversation_id, body.keep_messages)
    return {
        "deleted_messages": trimmed.messages,
        "deleted_attachments": len(trimmed.attachment_ids),
        "kept_from_seq": trimmed.kept_from_seq,
    }


@router.get("/admin/release", include_in_schema=False)
async def release_page(request: Request) -> FileResponse:
    return FileResponse(
        request.app.state.static_dir / "admin" / "release.html",
        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
    )
