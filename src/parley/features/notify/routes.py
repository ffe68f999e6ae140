"""`/v1/notifications/...`: a member's own preferences, mutes, push subscriptions, Telegram link
(role: any signed-in user, for themselves); the e-mail unsubscribe link (no login: its token is
signed); `/v1/admin/notifications` (admins); and the service worker at `/parley-sw.js`.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.schemas import Input
from parley.core.errors import BadInput, ParleyError
from parley.core.notify import DeliveryStatus, Preferences, QuietHours
from parley.features.notify.service import check_admin
from parley.storage.notify import Delivery, PushSubscription

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])
admin_router = APIRouter(prefix="/v1/admin/notifications", tags=["admin", "notifications"])
worker_router = APIRouter(tags=["notifications"])

ConversationId = Annotated[int, Path(ge=1, le=2**53)]
SubscriptionId = Annotated[int, Path(ge=1, le=2**53)]
Email = Annotated[
    str, Field(min_length=3, max_length=254, pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
]
B64Url = Annotated[str, Field(min_length=8, max_length=200, pattern=r"^[A-Za-z0-9_-]+=*$")]
Token = Annotated[str, Query(min_length=10, max_length=1000, pattern=r"^[A-Za-z0-9_.-]+$")]


class PreferencesOut(BaseModel):
    email: str | None
    email_enabled: bool
    push_enabled: bool
    telegram_enabled: bool
    telegram_linked: bool
    quiet_hours: QuietHours | None
    channels: list[str] = Field(description="The channels this deployment has configured.")

    @classmethod
    def of(cls, prefs: Preferences, channels: set[str]) -> PreferencesOut:
        return cls(
            email=prefs.email,
            email_enabled=prefs.email_enabled,
            push_enabled=prefs.push_enabled,
            telegram_enabled=prefs.telegram_enabled,
            telegram_linked=prefs.telegram_chat_id is not None,
            quiet_hours=prefs.quiet_hours,
            channels=sorted(channels),
        )


class PreferencesIn(Input):
    email: Email | None = None
    email_enabled: bool | None = None
    push_enabled: bool | None = None
    telegram_enabled: bool | None = None
    quiet_hours: QuietHours | None = None


@router.get("/preferences", response_model=PreferencesOut)
async def get_preferences(user: CurrentUser, services: ServicesDep) -> PreferencesOut:
    notify = services.notifications
    return PreferencesOut.of(await notify.get_preferences(user), set(notify.channels))


@router.patch("/preferences", response_model=PreferencesOut)
async def update_preferences(
    body: PreferencesIn, user: CurrentUser, services: ServicesDep
) -> PreferencesOut:
    """Change the named fields; `email: null` forgets the address, `quiet_hours: null` ends them."""
    notify = services.notifications
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    for flag in ("email_enabled", "push_enabled", "telegram_enabled"):
        if flag in changes and changes[flag] is None:
            del changes[flag]
    if isinstance(changes.get("quiet_hours"), QuietHours):
        changes["quiet_hours"] = changes["quiet_hours"].model_dump(mode="json")
    prefs = await notify.do_update_preferences(user, changes)
    return PreferencesOut.of(prefs, set(notify.channels))


class MuteIn(Input):
    until: datetime | None = Field(default=None, description="Null: until unmuted.")


class MuteOut(BaseModel):
    conversation_id: int
    until: datetime | None


class MutesOut(BaseModel):
    mutes: list[MuteOut]


@router.get("/mutes", response_model=MutesOut)
async def list_mutes(user: CurrentUser, services: ServicesDep) -> MutesOut:
    found = await services.notifications.list_mutes(user)
    return MutesOut(mutes=[MuteOut(conversation_id=c, until=u) for c, u in found])


@router.put("/mutes/{conversation_id}", response_model=MuteOut)
async def mute(
    conversation_id: ConversationId, body: MuteIn, user: CurrentUser, services: ServicesDep
) -> MuteOut:
    """No notifications from this conversation (members only: 404 for anyone else)."""
    until = body.until
    if until is not None and until.tzinfo is None:
        raise BadInput("`until` needs a time zone (e.g. 2030-01-01T08:00:00Z)")
    await services.notifications.do_mute(user, conversation_id, until)
    return MuteOut(conversation_id=conversation_id, until=until)


@router.delete("/mutes/{conversation_id}", status_code=204)
async def unmute(conversation_id: ConversationId, user: CurrentUser, services: ServicesDep) -> None:
    await services.notifications.do_unmute(user, conversation_id)


class PushKeyOut(BaseModel):
    public_key: str = Field(
        description="VAPID public key: PushManager.subscribe's applicationServerKey."
    )


@router.get("/push/key", response_model=PushKeyOut)
async def push_key(services: ServicesDep) -> PushKeyOut:
    """Public: the key browsers subscribe with (404 when Web Push is not configured)."""
    return PushKeyOut(public_key=services.notifications.vapid_public_key())


class SubscriptionKeys(Input):
    p256dh: B64Url
    auth: B64Url


class SubscriptionIn(Input):
    """`PushSubscription.toJSON()` as the browser gives it."""

    endpoint: Annotated[str, Field(min_length=10, max_length=2000, pattern=r"^https?://\S+$")]
    keys: SubscriptionKeys
    expirationTime: float | None = None


class SubscriptionOut(BaseModel):
    id: int
    endpoint_host: str
    user_agent: str
    created_at: datetime

    @classmethod
    def of(cls, sub: PushSubscription) -> SubscriptionOut:
        host = sub.endpoint.split("/")[2] if sub.endpoint.count("/") >= 2 else ""
        return cls(
            id=sub.id, endpoint_host=host, user_agent=sub.user_agent, created_at=sub.created_at
        )


class SubscriptionsOut(BaseModel):
    subscriptions: list[SubscriptionOut]


@router.post("/push/subscriptions", response_model=SubscriptionOut, status_code=201)
async def subscribe(
    body: SubscriptionIn, request: Request, user: CurrentUser, services: ServicesDep
) -> SubscriptionOut:
    """This browser's push subscription for the caller (the same endpoint again replaces it)."""
    sub = await services.notifications.do_subscribe(
        user,
        endpoint=body.endpoint,
        p256dh=body.keys.p256dh,
        auth=body.keys.auth,
        user_agent=request.headers.get("user-agent", ""),
    )
    return SubscriptionOut.of(sub)


@router.get("/push/subscriptions", response_model=SubscriptionsOut)
async def list_subscriptions(user: CurrentUser, services: ServicesDep) -> SubscriptionsOut:
    subs = await services.notifications.list_subscriptions(user)
    return SubscriptionsOut(subscriptions=[SubscriptionOut.of(s) for s in subs])


@router.delete("/push/subscriptions/{subscription_id}", status_code=204)
async def unsubscribe_push(
    subscription_id: SubscriptionId, user: CurrentUser, services: ServicesDep
) -> None:
    """Remove one of the caller's subscriptions (someone else's: 404)."""
    await services.notifications.do_delete_subscription(user, subscription_id)


class TelegramLinkIn(Input):
    chat_id: Annotated[
        str, Field(min_length=1, max_length=64, pattern=r"^-?[0-9]{1,20}$|^@\w{5,32}$")
    ]


class TelegramCodeIn(Input):
    code: Annotated[str, Field(min_length=6, max_length=6, pattern=r"^[0-9]{6}$")]


@router.put("/telegram", status_code=202)
async def link_telegram(
    body: TelegramLinkIn, user: CurrentUser, services: ServicesDep
) -> dict[str, str]:
    """Send a code to this chat; the link holds once POST /telegram/verify gets it back."""
    await services.notifications.do_start_telegram_link(user, body.chat_id)
    return {"status": "code_sent"}


@router.post("/telegram/verify", response_model=PreferencesOut)
async def verify_telegram(
    body: TelegramCodeIn, user: CurrentUser, services: ServicesDep
) -> PreferencesOut:
    notify = services.notifications
    prefs = await notify.do_verify_telegram(user, body.code)
    return PreferencesOut.of(prefs, set(notify.channels))


@router.delete("/telegram", response_model=PreferencesOut)
async def unlink_telegram(user: CurrentUser, services: ServicesDep) -> PreferencesOut:
    notify = services.notifications
    return PreferencesOut.of(await notify.do_unlink_telegram(user), set(notify.channels))


# -- the e-mail's unsubscribe link: no login, the signed token decides ------------------------


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width'><title>{html.escape(title)}</title>"
        "</head><body style='font-family:sans-serif;max-width:32em;margin:3em auto'>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@router.get("/unsubscribe", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe_page(token: Token) -> HTMLResponse:
    """A confirmation page: a GET changes nothing (mail scanners follow links)."""
    action = f"/v1/notifications/unsubscribe?token={html.escape(token, quote=True)}"
    return _page(
        "Unsubscribe from e-mail notifications",
        f"<form method=post action='{action}'><p>No more e-mails about unread messages.</p>"
        "<button type=submit>Unsubscribe</button></form>",
    )


@router.post("/unsubscribe", response_class=HTMLResponse)
async def unsubscribe(token: Token, services: ServicesDep) -> HTMLResponse:
    """RFC 8058 one-click (mail clients POST `List-Unsubscribe=One-Click`) and the page's form."""
    try:
        await services.notifications.do_unsubscribe(token)
    except ParleyError as exc:
        return _page("This link does not work", f"<p>{html.escape(exc.message)}</p>", exc.status)
    return _page(
        "You are unsubscribed",
        "<p>You will get no more e-mail notifications. Turn them back on in your settings.</p>",
    )


# -- admins ------------------------------------------------------------------------------------


class ChannelRateOut(BaseModel):
    channel: str
    sent: int
    dropped: int
    expired: int
    drop_rate: float


class DeliveryOut(BaseModel):
    id: int
    user_id: int
    channel: str
    subject: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id,
            user_id=d.user_id,
            channel=d.channel,
            subject=d.subject,
            status=d.status.value,
            attempts=d.attempts,
            last_error=d.last_error,
            created_at=d.created_at,
            finished_at=d.finished_at,
        )


class StatusOut(BaseModel):
    channels: list[str]
    worker: str
    queues: dict[str, int]
    drop_rates: list[ChannelRateOut]
    dead_letters: list[DeliveryOut]


@admin_router.get("", response_model=StatusOut)
async def notification_status(user: CurrentUser, services: ServicesDep) -> StatusOut:
    """Queues, the drop rate per channel (the release gate's input) and the newest dead letters."""
    check_admin(user)
    notify = services.notifications
    rates = await notify.refresh_metrics()
    by_status = await notify.store.count_by_status()
    return StatusOut(
        channels=sorted(notify.channels),
        worker=services.settings.notify_worker,
        queues={
            "outbox": await notify.store.count_outbox(),
            "pending": await notify.store.count_pending(),
            **by_status,
        },
        drop_rates=[
            ChannelRateOut(
                channel=r.channel,
                sent=r.sent,
                dropped=r.dropped,
                expired=r.expired,
                drop_rate=r.rate,
            )
            for r in rates
        ],
        dead_letters=[
            DeliveryOut.of(d)
            for d in await notify.store.list_deliveries(status=DeliveryStatus.DEAD, limit=50)
        ],
    )


# -- the service worker ------------------------------------------------------------------------


@worker_router.get("/parley-sw.js", include_in_schema=False)
async def service_worker(request: Request) -> Response:
    """Served from the root so it may control every page of the origin (scope `/`)."""
    return FileResponse(
        request.app.state.static_dir / "notify" / "sw.js",
        media_type="text/javascript",
        headers={"Service-Worker-Allowed": "/", "Cache-Control": "no-cache"},
    )
