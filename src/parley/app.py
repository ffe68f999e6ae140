"""create_app(settings): the only place that wires Parley together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from parley import __version__
from parley.api.errors import install_error_handlers
from parley.api.middleware import MaintenanceGate, RequestBodyLimit, RequestObserver
from parley.api.routes import (
    attachments,
    auth,
    conversations,
    demo,
    icons,
    messages,
    ops,
    search,
    stream,
    threads,
    users,
)
from parley.api.static import ParleyStaticFiles
from parley.assembly import Services
from parley.features.audit import routes as audit
from parley.features.calls import routes as calls
from parley.features.console import routes as console
from parley.features.disputes import routes as disputes
from parley.features.export import routes as export
from parley.features.inbox import routes as inbox
from parley.features.livechat import routes as livechat
from parley.features.moderation import routes as moderation
from parley.features.notify import routes as notify
from parley.features.ops import preflight_routes
from parley.features.ops import routes as ops_routes
from parley.features.ops.version import git_sha
from parley.features.privacy import routes as privacy
from parley.features.release import routes as release
from parley.features.sso import routes as sso
from parley.features.widget import routes as widget
from parley.features.widget import visitor as widget_visitor
from parley.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"
log = logging.getLogger("parley")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The commit is read once, at start (GET /version): a checkout changed under a running
        # process does not change what it runs.
        log.info(
            "parley %s (commit %s, profile %s) starting",
            __version__,
            git_sha(settings),
            settings.effective_profile,
        )
        services = Services.build(settings)
        await services.start()
        app.state.services = services
        if settings.demo:
            await demo.seed_demo(services)
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(
        title="Parley",
        version=__version__,
        description="Self-hosted chat: REST timeline, real-time delivery, release safety.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for router in (
        ops.router,
        auth.router,
        users.router,
        conversations.router,
        messages.router,
        threads.router,
        search.router,
        attachments.router,
        stream.router,
        demo.router,
        icons.router,
        release.router,
        inbox.router,
        livechat.router,
        livechat.admin_router,
        widget.router,
        widget_visitor.router,
        console.router,
        audit.router,
        preflight_routes.router,
        moderation.router,
        disputes.router,
        notify.router,
        notify.admin_router,
        notify.worker_router,
        calls.router,
        calls.page_router,
        sso.router,
        ops_routes.router,
        export.router,
        privacy.router,
    ):
        app.include_router(router)
    app.mount("/static", ParleyStaticFiles(directory=STATIC_DIR), name="static")
    app.state.settings = settings
    app.state.static_dir = STATIC_DIR
    app.add_middleware(
        RequestBodyLimit,
        default=settings.request_max_bytes,
        overrides=[
            (pattern, settings.attachment_max_bytes + 64 * 1024)
            for pattern in (attachments.UPLOAD_PATH_PATTERN, widget.UPLOAD_PATH_PATTERN)
        ],
    )
    app.add_middleware(MaintenanceGate)
    app.add_middleware(RequestObserver)
    app.add_middleware(stream.StreamSocketRoute)
    if settings.trusted_proxies:
        # Outermost: only a configured proxy may set the client address (and scheme) everything
        # inside reads. `parley serve` turns uvicorn's own copy, which trusts loopback, off.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    return app
