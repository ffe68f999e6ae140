"""`GET /v1/admin/preflight`: the deployment checks its own configuration (admins only).

Go/No-Go's production profile reads it; `GET /version` (in `api/routes/ops.py`) says what runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from parley.api.deps import CurrentUser, ServicesDep
from parley.core.errors import Forbidden
from parley.core.models import Role
from parley.features.ops.preflight import Context, run_preflight

router = APIRouter(tags=["admin", "operations"])


@router.get("/v1/admin/preflight")
async def preflight(
    user: CurrentUser,
    services: ServicesDep,
    profile: Annotated[Literal["production", "staging", "embedded"] | None, Query()] = None,
) -> dict[str, Any]:
    """Every preflight check this node can run on itself, for `profile` (default: its own).

    The TLS certificate is the caller's to check: only it knows the URL users reach.
    """
    if user.role is not Role.ADMIN:
        raise Forbidden("only admins run preflight checks")
    chosen = profile or services.settings.effective_profile
    findings = await run_preflight(Context(services, chosen), remote_only=True)
    return {"profile": chosen, "checks": [finding.to_json() for finding in findings]}
