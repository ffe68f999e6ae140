"""The favicon: one SVG, also answered at /favicon.ico, which browsers ask for on every page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

router = APIRouter(tags=["pages"], include_in_schema=False)

ICON_HEADERS = {"Cache-Control": "public, max-age=86400"}


@router.get("/favicon.svg")
@router.get("/favicon.ico")
async def favicon(request: Request) -> FileResponse:
    """Anyone, signed in or not: it is the same picture for every page."""
    return FileResponse(
        request.app.state.static_dir / "favicon.svg",
        media_type="image/svg+xml",
        headers=ICON_HEADERS,
    )
