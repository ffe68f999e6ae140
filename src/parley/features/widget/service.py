"""Widget sessions: a visitor bootstraps, sends and polls as a `member` user of one inbox."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from parley.core.errors import ErrorCode, Forbidden, NotFound, Unavailable
from parley.core.inboxes import Inbox, WidgetSession
from parley.core.models import Appended, ConversationKind, Role, User
from parley.metrics import WIDGET_REFUSED
from parley.services.identity import Identity, hash_token
from parley.services.timeline import Timeline
from parley.settings import Settings
from parley.storage.inboxes import InboxStore

SESSION_PREFIX = "vs_"


@dataclass(frozen=True, slots=True)
class Visit:
    """A visitor's session, resolved: its inbox, the visitor user and their conversation."""

    inbox: Inbox
    session: WidgetSession
    visitor: User


@dataclass(frozen=True, slots=True)
class Bootstrapped:
    visit: Visit
    session_token: str
    restored: bool


class Widget:
    def __init__(
        self, *, settings: Settings, store: InboxStore, identity: Identity, timeline: Timeline
    ) -> None:
        self.settings = settings
        self.store = store
        self.identity = identity
        self.timeline = timeline

    def check_enabled(self, inbox: Inbox | None = None) -> None:
        """503 while the messenger is off globally, or this inbox's kill switch is on."""
        if not self.settings.messenger_enabled or (inbox is not None and not inbox.enabled):
            WIDGET_REFUSED.labels("disabled").inc()
        if not self.settings.messenger_enabled:
            raise Unavailable("the messenger is switched off", ErrorCode.MESSENGER_DISABLED)
        if inbox is not None and not inbox.enabled:
            raise Unavailable("this inbox's chat is switched off", ErrorCode.MESSENGER_DISABLED)

    async def access_inbox(self, widget_token: str) -> Inbox:
        inbox = await self.store.find_inbox_by_token(widget_token)
        if inbox is None:
            raise NotFound("no inbox has this widget token")
        return inbox

    async def access_visit(self, session_token: str) -> Visit:
        """The session's inbox, visitor and conversation; 404 for an unknown token."""
        session = await self.store.find_widget_session(hash_token(session_token))
        inbox = await self.store.get_inbox(session.inbox_id) if session else None
        visitor = await self.identity.users.get_user(session.visitor_id) if session else None
        if session is None or inbox is None or visitor is None:
            raise NotFound("unknown widget session; bootstrap again")
        return Visit(inbox=inbox, session=session, visitor=visitor)

    async def do_bootstrap(self, inbox: Inbox, session_token: str | None) -> Bootstrapped:
        """Restore the visitor's session when its token comes back, else start a new one.

        A token from another inbox is refused rather than replaced: it is someone's live session.
        """
        if session_token:
            try:
                visit = await self.access_visit(session_token)
            except NotFound:
                visit = None
            if visit is not None:
                if visit.inbox.id != inbox.id:
                    raise Forbidden("this session belongs to another inbox")
                await self.store.touch_widget_session(visit.session.id)
                return Bootstrapped(visit=visit, session_token=session_token, restored=True)
        visitor = await self.identity.do_create_user(
            f"visitor-{secrets.token_hex(6)}", role=Role.MEMBER, display_name="Visitor"
        )
        conversation, _ = await self.timeline.do_create_conversation(
            visitor,
            kind=ConversationKind.GROUP,
            title=f"{inbox.name}: {visitor.name}"[:200],
            member_names=inbox.operators,
        )
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        session = await self.store.add_widget_session(
            token_hash=hash_token(token),
            inbox_id=inbox.id,
            visitor_id=visitor.id,
            conversation_id=conversation.id,
        )
        visit = Visit(inbox=inbox, session=session, visitor=visitor)
        return Bootstrapped(visit=visit, session_token=token, restored=False)

    async def do_send(self, visit: Visit, *, client_msg_id: str, body: str) -> Appended:
        return await self.timeline.do_send(
            visit.visitor,
            visit.session.conversation_id,
            client_msg_id=client_msg_id,
            body=body,
            attachment_ids=[],
            metadata={},
        )

    def privacy(self, inbox: Inbox) -> tuple[str, str]:
        return (
            inbox.privacy_url or self.settings.privacy_url,
            inbox.privacy_text or self.settings.privacy_text,
        )

    def is_online(self, inbox: Inbox) -> bool:
        return inbox.is_online(datetime.now(UTC))
