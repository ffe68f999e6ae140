"""The demo: the chat app at `/` with two seeded users, alice and bob, and an admin (admin /
admin) for the release page (only with PARLEY_DEMO=true).

It also seeds the "Demo shop" inbox (operators alice and bob, always online, allowed on
127.0.0.1 and localhost) and serves /demo/shop, a page that embeds the website widget.
"""

from __future__ import annotations

import html
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from parley.api.deps import ServicesDep
from parley.api.schemas import Input, TokenOut, UserOut
from parley.assembly import Services
from parley.core.errors import ErrorCode, NotFound
from parley.core.models import ConversationKind, Role

router = APIRouter(tags=["demo"], include_in_schema=False)

DEMO_USERS = ("alice", "bob")
# The demo's admin, for /admin/release and the console's admin screens; `serve --demo` prints it.
DEMO_ADMIN = "admin"
DEMO_ADMIN_PASSWORD = "admin"  # noqa: S105 -- the demo's, printed on purpose
DEMO_INBOX = "Demo shop"
DEMO_CSP = (
    "default-src 'self'; img-src 'self' blob:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; frame-ancestors 'none'"
)


class DemoSessionIn(Input):
    name: Literal["alice", "bob"]


@router.get("/")
async def index(request: Request) -> Response:
    if not request.app.state.settings.demo:
        return RedirectResponse("/docs")
    return FileResponse(
        request.app.state.static_dir / "demo" / "index.html",
        headers={"Content-Security-Policy": DEMO_CSP, "Cache-Control": "no-cache"},
    )


@router.get("/demo/shop")
async def shop(request: Request, services: ServicesDep) -> Response:
    """A pretend shop page with the website chat widget of the "Demo shop" inbox embedded."""
    if not request.app.state.settings.demo:
        raise NotFound("the demo is off (set PARLEY_DEMO=true)", ErrorCode.NOT_FOUND)
    inbox = next((i for i in await services.inboxes.list_inboxes() if i.name == DEMO_INBOX), None)
    if inbox is None:
        raise NotFound("the demo inbox is missing; restart with --demo", ErrorCode.NOT_FOUND)
    page = (request.app.state.static_dir / "demo" / "shop.html").read_text(encoding="utf-8")
    return HTMLResponse(
        page.replace("{{widget_token}}", html.escape(inbox.widget_token)),
        headers={"Content-Security-Policy": DEMO_CSP, "Cache-Control": "no-cache"},
    )


@router.post("/demo/session", response_model=TokenOut)
async def demo_session(body: DemoSessionIn, request: Request, services: ServicesDep) -> TokenOut:
    """Sign in as a demo user with one click."""
    if not request.app.state.settings.demo:
        raise NotFound("the demo is off (set PARLEY_DEMO=true)", ErrorCode.NOT_FOUND)
    users = await services.identity.users.find_users_by_name([body.name])
    token = await services.identity.do_issue_token(users[0], label="demo")
    return TokenOut(token=token, user=UserOut.of(users[0]))


async def seed_demo(services: Services) -> None:
    """Create alice, bob, the demo admin, a room alice and bob share and the "Demo shop" inbox,
    once."""
    existing = {
        u.name: u for u in await services.identity.users.find_users_by_name(list(DEMO_USERS))
    }
    for name in DEMO_USERS:
        if name not in existing:
            existing[name] = await services.identity.do_create_user(
                name, password=name, display_name=name.capitalize()
            )
    if not await services.identity.users.find_users_by_name([DEMO_ADMIN]):
        await services.identity.do_create_user(
            DEMO_ADMIN, role=Role.ADMIN, password=DEMO_ADMIN_PASSWORD, display_name="Demo admin"
        )
    alice = existing["alice"]
    if not await services.timeline.list_conversations(alice):
        await services.timeline.do_create_conversation(
            alice, kind=ConversationKind.ROOM, title="Demo room", member_names=["bob"]
        )
        await services.timeline.do_create_conversation(
            alice, kind=ConversationKind.DIRECT, title="", member_names=["bob"]
        )
    if not any(inbox.name == DEMO_INBOX for inbox in await services.inboxes.list_inboxes()):
        await services.inboxes.do_create_inbox(
            "system:demo",
            DEMO_INBOX,
            allowed_domains=["127.0.0.1", "localhost"],
            operators=list(DEMO_USERS),
            privacy_text="Demo only: messages stay on this server.",
            working_hours=None,
            allow_attachments=True,
        )
