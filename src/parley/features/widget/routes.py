"""`/api/widget/...`: bootstrap, send, poll — no bearer; the widget or session token decides.

Every request passes the same defences in the same order: the global switch, the per-IP rate
(before any database work), the inbox's kill switch, the page's origin, the per-token/session
rates.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from parley.api.deps import ServicesDep
from parley.api.schemas import Input, MessageOut, Text
from parley.core import limits
from parley.features.widget.challenge import Solution
from parley.features.widget.edge import allow_cors
from parley.features.widget.guard import check_origin
from parley.features.widget.service import Visit
from parley.metrics import WIDGET_REFUSED
from parley.transports import client_ip, poll

router = APIRouter(prefix="/api/widget", tags=["widget"])
UPLOAD_PATH_PATTERN = "/api/widget/attachments"

# Both tokens are server-made URL-safe strings; the shape check keeps NUL and junk out of queries.
TokenShape = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
WidgetToken = Annotated[str, TokenShape]
SessionToken = Annotated[str, TokenShape]


# The embedding page's address (http/https only) and a BCP 47-like tag (`ru`, `pt-BR`).
PageUrl = Annotated[str, Field(max_length=2000, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s]+$")]
Language = Annotated[str, Field(max_length=35, pattern=r"^[A-Za-z]{1,8}([-_][A-Za-z0-9]{1,8})*$")]


ATTRIBUTES_MAX = 20
ResumeToken = Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^[A-Za-z0-9_.-]+$")]
AttributeKey = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
AttributeValue = Text(500)  # type: ignore[valid-type]


class ChallengeIn(Input):
    id: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9.]+$")]
    nonce: Annotated[str, Field(min_length=1, max_length=20, pattern=r"^[0-9]+$")]


class BootstrapIn(Input):
    widget_token: WidgetToken
    session: SessionToken | None = None
    # The site's signed word for who its logged-in user is (docs/widget.md, "Identity").
    identity: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    # A solved proof-of-work challenge, once bootstrap asked for one.
    challenge: ChallengeIn | None = None
    # Where the visitor is and what they read: live-chat routing rules match on these.
    page_url: PageUrl | None = None
    language: Language | None = None
    # What the site says about its visitor (name, email, plan...), shown to operators as text.
    # Unverified: the page can put anything here.
    attributes: (
        Annotated[dict[AttributeKey, AttributeValue], Field(max_length=ATTRIBUTES_MAX)] | None
    ) = None
    # The signed token of a reply e-mail's link back into a conversation (`#parley-resume=`).
    resume: (
        Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^[A-Za-z0-9_.-]+$")] | None
    ) = None


class PrivacyOut(BaseModel):
    url: str
    text: str


class BootstrapOut(BaseModel):
    session: str = Field(description="Keep it (localStorage) and send it back to restore.")
    restored: bool
    conversation_id: int
    visitor_id: int
    visitor_name: str
    inbox_name: str
    privacy: PrivacyOut
    online: bool
    offline_message: str | None
    allow_attachments: bool
    greeting: str | None = Field(None, description="The inbox's welcome, shown on open.")
    reply_time: str | None = Field(None, description='e.g. "We usually reply in a few minutes".')
    verified: bool = Field(description="The session belongs to a verified site user.")


class WidgetSendIn(Input):
    session: SessionToken
    client_msg_id: Text(limits.CLIENT_MSG_ID_MAX_CHARS, min_length=1)  # type: ignore[valid-type]
    # May be empty when the message carries attachments.
    body: Text(limits.MESSAGE_BODY_MAX_CHARS) = ""  # type: ignore[valid-type]
    attachment_ids: list[Annotated[str, Field(max_length=40)]] = Field(
        default_factory=list, max_length=limits.ATTACHMENTS_PER_MESSAGE_MAX
    )


def _ip(request: Request, services: ServicesDep) -> str:
    return client_ip(request)


async def _visit(request: Request, services: ServicesDep, session: str) -> Visit:
    visit = await services.widget.access_visit(session)
    services.widget.check_enabled(visit.inbox)
    check_origin(request, visit.inbox)
    allow_cors(request)
    return visit


def _allow_cors(request: Request, response: Response) -> None:
    """Let the embedding page read the answer; only called once its origin passed the check."""
    allow_cors(request, response)


@router.options("/{path:path}", status_code=204, include_in_schema=False)
async def preflight(request: Request) -> Response:
    """CORS preflight. It carries no body, so no inbox: the real request is checked instead."""
    response = Response(status_code=204)
    _allow_cors(request, response)
    response.headers["Access-Control-Allow-Methods"] = "GET, POST"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type"
    response.headers["Access-Control-Max-Age"] = "600"
    return response


@router.post("/bootstrap", response_model=BootstrapOut)
async def bootstrap(
    body: BootstrapIn, request: Request, response: Response, services: ServicesDep
) -> BootstrapOut:
    """A visitor session for this inbox: the one `session` names if it is still there, else new."""
    widget = services.widget
    widget.check_enabled()
    await services.widget_limits.hit("bootstrap_ip", _ip(request, services))
    inbox = await widget.access_inbox(body.widget_token)
    widget.check_enabled(inbox)
    check_origin(request, inbox)
    _allow_cors(request, response)
    await services.widget_limits.hit("bootstrap_token", body.widget_token)
    await _check_challenge(body, request, services)
    if body.resume:
        done = await widget.do_resume(inbox, body.resume)
    else:
        verified = await widget.check_identity(inbox, body.identity)
        done = await widget.do_bootstrap(
            inbox,
            body.session,
            verified=verified,
            page_url=body.page_url,
            language=body.language,
            attributes=body.attributes or {},
            client_ip=_ip(request, services),
        )
    url, text = widget.privacy(inbox)
    # No policy URL configured: the deployment's own page (docs/privacy.md), never no link.
    url = url or str(request.url_for("privacy_page"))
    online = await widget.is_online(inbox)
    return BootstrapOut(
        session=done.session_token,
        restored=done.restored,
        conversation_id=done.visit.session.conversation_id,
        visitor_id=done.visit.visitor.id,
        visitor_name=done.visit.visitor.name,
        inbox_name=inbox.name,
        privacy=PrivacyOut(url=url, text=text),
        online=online,
        offline_message=None if online else inbox.offline_message,
        allow_attachments=inbox.allow_attachments,
        greeting=inbox.greeting,
        reply_time=inbox.reply_time,
        verified=done.visit.session.external_id is not None,
    )


async def _check_challenge(body: BootstrapIn, request: Request, services: ServicesDep) -> None:
    """Past the per-address threshold, a bootstrap needs a solved proof-of-work challenge."""
    ip = _ip(request, services)
    if body.challenge is not None:
        solution = Solution(id=body.challenge.id, nonce=body.challenge.nonce)
        await services.widget_challenges.check_solution(solution, ip)
    elif not await services.widget_limits.within("challenge_ip", ip):
        WIDGET_REFUSED.labels("challenge").inc()
        raise services.widget_challenges.required(ip)


@router.post("/messages", response_model=MessageOut, status_code=201)
async def send(
    body: WidgetSendIn, request: Request, response: Response, services: ServicesDep
) -> MessageOut:
    """The visitor's message, through the same path as every other send (seq, idempotency)."""
    services.widget.check_enabled()
    await services.widget_limits.hit("send_ip", _ip(request, services))
    visit = await _visit(request, services, body.session)
    _allow_cors(request, response)
    await services.widget_limits.hit("send_session", str(visit.session.id))
    appended = await services.widget.do_send(
        visit,
        client_msg_id=body.client_msg_id,
        body=body.body,
        attachment_ids=body.attachment_ids,
    )
    if not appended.created:
        response.status_code = 200
    return MessageOut.of(appended.message)


# A plain address check: the reply goes there, so a typo is caught before the visitor leaves.
Email = Annotated[
    str, Field(min_length=3, max_length=254, pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
]


class OfflineIn(Input):
    session: SessionToken
    email: Email
    client_msg_id: Text(limits.CLIENT_MSG_ID_MAX_CHARS, min_length=1)  # type: ignore[valid-type]
    body: Text(limits.MESSAGE_BODY_MAX_CHARS, min_length=1)  # type: ignore[valid-type]


@router.post("/offline", response_model=MessageOut, status_code=201)
async def leave_offline(
    body: OfflineIn, request: Request, response: Response, services: ServicesDep
) -> MessageOut:
    """The offline form: an address for the reply and a message (operators get e-mail/push)."""
    services.widget.check_enabled()
    await services.widget_limits.hit("send_ip", _ip(request, services))
    visit = await _visit(request, services, body.session)
    _allow_cors(request, response)
    await services.widget_limits.hit("send_session", str(visit.session.id))
    appended = await services.widget.do_leave_offline(
        visit, email=body.email, client_msg_id=body.client_msg_id, body=body.body
    )
    if not appended.created:
        response.status_code = 200
    return MessageOut.of(appended.message)


@router.get("/poll")
async def widget_poll(
    request: Request,
    services: ServicesDep,
    session: Annotated[str, Query(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
    cursor: Annotated[str | None, Query(max_length=20, pattern=r"^[0-9]+$")] = None,
    timeout: Annotated[float, Query(ge=0, le=poll.MAX_TIMEOUT_SECONDS)] = 25,
) -> Response:
    """`{"events": [...], "cursor": "N"}` for the visitor's conversation, as `/v1/stream/poll`."""
    services.widget.check_enabled()
    visit = await _visit(request, services, session)
    await services.widget_limits.hit("poll_interval", str(visit.session.id))
    await services.widget_limits.hit("poll_session", str(visit.session.id))
    answer = await poll.poll_as(
        visit.visitor,
        services.stream,
        cursor=cursor,
        timeout=timeout,
        client_ip=_ip(request, services),
        holder=f"widget:{visit.session.id}",
    )
    _allow_cors(request, answer)
    return answer
