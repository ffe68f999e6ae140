"""The staff console's pages, each one static HTML file served with strict headers:
`/console` (operators: live chat), `/console/moderation` (moderators: the queue) and
`/console/disputes` (dispute_ops: disputes).

Everything they show comes from the REST API and the `/v1` stream, rendered by
static/console/*.js as text only; the headers make sure nothing inline could run anyway.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

router = APIRouter(tags=["console"], include_in_schema=False)

# No 'unsafe-inline' anywhere: visitor text that slipped into markup still could not run.
# connect-src 'self' covers the page's own ws:/wss: origin too (CSP Level 3); blob: is for
# attachment downloads, which are fetched with the bearer token and saved from a blob URL.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@router.get("/console")
async def console_page(request: Request) -> FileResponse:
    return FileResponse(
        request.app.state.static_dir / "console" / "console.html", headers=PAGE_HEADERS
    )


@router.get("/console/moderation")
async def moderation_page(request: Request) -> FileResponse:
    return FileResponse(
        request.app.state.static_dir / "console" / "moderation.html", headers=PAGE_HEADERS
    )


@router.get("/console/disputes")
async def disputes_page(request: Request) -> FileResponse:
    return FileResponse(
        request.app.state.static_dir / "console" / "disputes.html", headers=PAGE_HEADERS
    )
