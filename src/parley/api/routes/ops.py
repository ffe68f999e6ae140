"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from parley.api.deps import ServicesDep
from parley.core.errors import Unavailable

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready to serve: the database answers."""
    try:
        await services.db.ping()
    except Unavailable as exc:
        return JSONResponse(
            {"status": "unavailable", "checks": {"database": str(exc)}}, status_code=503
        )
    return JSONResponse({"status": "ok", "checks": {"database": "ok"}})


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
