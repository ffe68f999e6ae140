"""create_app(settings): the only place that wires Parley together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from parley import __version__
from parley.api.errors import install_error_handlers
from parley.api.middleware import RequestBodyLimit, RequestObserver
from parley.api.routes import attachments, auth, conversations, demo, messages, ops, stream
from parley.features.inbox import routes as inbox
from parley.features.release import routes as release
from parley.features.widget import routes as widget
from parley.services.container import Services
from parley.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
        conversations.router,
        messages.router,
        attachments.router,
        stream.router,
        demo.router,
        release.router,
        inbox.router,
        widget.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.state.settings = settings
    app.state.static_dir = STATIC_DIR
    app.add_middleware(
        RequestBodyLimit,
        default=settings.request_max_bytes,
        overrides=[(attachments.UPLOAD_PATH_PATTERN, settings.attachment_max_bytes + 64 * 1024)],
    )
    app.add_middleware(RequestObserver)
    return app
