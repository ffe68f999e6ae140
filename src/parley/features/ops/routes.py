"""`/v1/maintenance` (anyone: is the deployment in maintenance, and what to tell users) and
`/v1/admin/maintenance` (admins: switch it)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from parley.api.deps import CurrentUser, ServicesDep
from parley.features.ops.maintenance import MESSAGE_MAX

router = APIRouter(tags=["operations"])


class MaintenanceOut(BaseModel):
    active: bool
    message: str = Field(description="What to show users while it is on.")
    retry_after: int = Field(description="Seconds clients should wait before trying again.")
    since: str | None = Field(description="UTC time it was switched on (null when off).")


class MaintenanceAdminOut(MaintenanceOut):
    actor: str = Field(description="Who switched it last.")


class MaintenanceIn(BaseModel):
    active: bool
    message: str = Field(default="", max_length=MESSAGE_MAX)
    retry_after: int | None = Field(default=None, ge=1, le=86_400)
    reason: str = Field(default="", max_length=2000, description="Why, for the audit log.")


@router.get("/v1/maintenance", response_model=MaintenanceOut)
async def maintenance_status(services: ServicesDep) -> MaintenanceOut:
    """Anyone, signed in or not (answered during maintenance too): the banner's source."""
    return MaintenanceOut(**services.maintenance.state.public_json())


@router.get("/v1/admin/maintenance", response_model=MaintenanceAdminOut, tags=["admin"])
async def maintenance_admin_status(user: CurrentUser, services: ServicesDep) -> MaintenanceAdminOut:
    """Admins: the switch as stored (what every node converges to), with who set it."""
    state = await services.maintenance.access_state(user)
    return MaintenanceAdminOut(**state.to_json())


@router.put("/v1/admin/maintenance", response_model=MaintenanceAdminOut, tags=["admin"])
async def maintenance_switch(
    body: MaintenanceIn, user: CurrentUser, services: ServicesDep
) -> MaintenanceAdminOut:
    """Admins: switch maintenance mode on or off for every node (audited)."""
    state = await services.maintenance.do_switch(
        user,
        active=body.active,
        message=body.message,
        retry_after=body.retry_after,
        reason=body.reason,
    )
    return MaintenanceAdminOut(**state.to_json())
