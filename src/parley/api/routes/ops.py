"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from parley import metrics
from parley.api.deps import ServicesDep
from parley.core.errors import Forbidden, Unauthenticated, Unavailable
from parley.features.ops.version import describe
from parley.transports import bearer_token, client_ip

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready to serve: the database answers and holds the schema this code expects (else 503).

    A bus outage only degrades the node (200, status "degraded"): sends still commit and every
    hub still catches up by polling the database head, just later. So does a
    PARLEY_DEFAULT_BRANCH_ID naming no branch (conversations then fall back to no branch), a
    volume with less free space than PARLEY_STORAGE_MIN_FREE_BYTES (text chat goes on; a full
    attachment volume refuses uploads with 507), and a clock further than
    PARLEY_CLOCK_SKEW_SECONDS from PostgreSQL's (order never depends on it; tokens may be
    judged wrongly). `version` is what `GET /version` says.
    """
    settings = services.settings
    bus_ok = services.stream.bus.healthy
    checks = {
        "database": "ok",
        "bus": "ok" if bus_ok else "unavailable; delivery polls the database",
    }
    # One answer within the database timeout, however many statements it takes: a paused or
    # unreachable database makes this node unready now, not after each statement timed out.
    budget = settings.database_timeout_seconds
    try:
        async with asyncio.timeout(budget):
            offset = await services.db.clock_offset()
            schema, can_serve = await services.check_schema()
            branch_problem = await services.livechat.check_default_branch()
            version = await describe(settings, services.db)
    except (Unavailable, TimeoutError) as exc:
        checks["database"] = str(exc) or f"no answer within {budget:g} s"
        version = await describe(settings, services.db, database_down=checks["database"])
        return JSONResponse(
            {"status": "unavailable", "checks": checks, "version": version}, status_code=503
        )
    checks["schema"] = schema
    if not can_serve:
        return JSONResponse(
            {"status": "unavailable", "checks": checks, "version": version}, status_code=503
        )
    healthy = bus_ok and not branch_problem and schema == "ok"
    if branch_problem:
        # Misrouted chats are a configuration error to fix, not a reason to stop serving.
        checks["default_branch"] = branch_problem
    elif settings.default_branch_id is not None:
        checks["default_branch"] = "ok"
    for volume in services.volumes.check():
        checks[volume.name + "_volume"] = volume.describe(settings.storage_min_free_bytes)
        healthy = healthy and not volume.nearly_full
    if offset is not None:
        metrics.CLOCK_OFFSET_SECONDS.set(offset)
        skewed = abs(offset) > settings.clock_skew_seconds
        checks["clock"] = (
            f"{offset:+.1f} s off the database's clock, beyond PARLEY_CLOCK_SKEW_SECONDS "
            f"({settings.clock_skew_seconds:g} s); fix NTP"
            if skewed
            else "ok"
        )
        healthy = healthy and not skewed
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", "checks": checks, "version": version}
    )


@router.get("/version")
async def version(services: ServicesDep) -> dict[str, object]:
    """Package version, git commit, schema revision (and the code's head), settings profile.

    Public, like `/readyz`: it names no secret, and Go/No-Go compares the commit with its target.
    """
    return await describe(services.settings, services.db)


@router.get("/metrics", response_class=Response)
async def metrics_page(request: Request, services: ServicesDep) -> Response:
    """Prometheus metrics: with PARLEY_METRICS_TOKEN, for its bearer only; else loopback only.

    They show release state, traffic and error rates: not for the public API port.
    """
    check_metrics_access(request, services.settings.metrics_token)
    services.volumes.check()  # free space as of this scrape
    for state, count in services.db.pool_status().items():
        metrics.DB_CONNECTIONS.labels(state).set(count)
    if services.stream.hub is not None:
        queued = [sub.backlog for sub in services.stream.hub.subscriptions()]
        metrics.STREAM_QUEUED_EVENTS.labels("all").set(sum(queued))
        metrics.STREAM_QUEUED_EVENTS.labels("largest").set(max(queued, default=0))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def check_metrics_access(request: Request, token: str) -> None:
    if token:
        given = bearer_token(request) or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthenticated(
                "send 'Authorization: Bearer <PARLEY_METRICS_TOKEN>' to read /metrics"
            )
        return
    # A local proxy in front of the server makes every visitor look local: what it forwarded
    # (X-Forwarded-For) is not a local caller.
    if _is_loopback(client_ip(request)) and "x-forwarded-for" not in request.headers:
        return
    raise Forbidden(
        "/metrics answers local callers only; set PARLEY_METRICS_TOKEN (bearer) or "
        "PARLEY_METRICS_LISTEN (internal listener) to scrape it from elsewhere"
    )


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
