"""Widget sessions: a visitor bootstraps, sends and polls as a `member` user of one inbox."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from parley.core.errors import ErrorCode, Forbidden, NotFound, Unauthenticated, Unavailable
from parley.core.inboxes import Inbox, WidgetSession
from parley.core.models import Appended, User
from parley.features.livechat.service import Livechat
from parley.features.notify.service import Notifications
from parley.features.widget.identity import VerifiedIdentity, invalid, verify_identity
from parley.metrics import WIDGET_REFUSED
from parley.services.identity import Identity, hash_token
from parley.services.timeline import Timeline
from parley.settings import Settings
from parley.storage.inboxes import InboxStore
from parley.storage.widget_identities import WidgetIdentityStore

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


def _visitor_name() -> str:
    return f"visitor-{secrets.token_hex(6)}"


class Widget:
    def __init__(
        self,
        *,
        settings: Settings,
        store: InboxStore,
        identity: Identity,
        timeline: Timeline,
        identities: WidgetIdentityStore | None = None,
        livechat: Livechat,
        notifications: Notifications | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.identity = identity
        self.timeline = timeline
        self.livechat = livechat
        self.notifications = notifications
        self.identities = identities or WidgetIdentityStore(store.db)
        self.directory = livechat.directory

    def check_enabled(self, inbox: Inbox | None = None) -> None:
        """503 while the messenger is off globally, or this inbox's kill switch is on."""
        if not self.settings.messenger_enabled or (inbox is not None and not inbox.enabled):
            WIDGET_REFUSED.labels("disabled").inc()
        if not self.settings.messenger_enabled:
            raise Unavailable("the messenger is switched off", ErrorCode.MESSENGER_DISABLED)
        if inbox is not None and not inbox.enabled:
            raise Unavailable("this inbox's chat is switched off", ErrorCode.MESSENGER_DISABLED)

    async def access_inbox(self, widget_token: str) -> Inbox:
        inbox = await self.directory.find_inbox_by_token(widget_token)
        if inbox is None:
            raise NotFound("no inbox has this widget token")
        return inbox

    async def access_visit(self, session_token: str) -> Visit:
        """The session's inbox, visitor and conversation; 404 for an unknown token."""
        found = await self.directory.find_visit(hash_token(session_token))
        if found is None:
            raise NotFound("unknown widget session; bootstrap again")
        session, inbox, visitor = found
        if session.external_id is not None and inbox.identity_secret is None:
            # Verified by a secret the inbox no longer has: nothing vouches for it any more.
            raise NotFound(
                "this verified session ended with identity verification; bootstrap again"
            )
        return Visit(inbox=inbox, session=session, visitor=visitor)

    async def check_identity(self, inbox: Inbox, token: str | None) -> VerifiedIdentity | None:
        """The site user an inbox with an identity secret must be given; 401 before any write.

        An inbox without a secret ignores `identity` (nothing to check it with). The token's
        nonce is used up here, so a replayed token fails even if the bootstrap fails later.
        """
        if inbox.identity_secret is None:
            return None
        try:
            if not token:
                raise invalid("this inbox requires a signed identity token")
            verified = verify_identity(
                token, inbox.identity_secret, skew=self.settings.clock_skew_seconds
            )
            if not await self.identities.use_nonce(inbox.id, verified.nonce, verified.expires_at):
                raise invalid("this token was already used")
        except Unauthenticated:
            WIDGET_REFUSED.labels("identity").inc()
            raise
        return verified

    async def do_bootstrap(
        self,
        inbox: Inbox,
        session_token: str | None,
        *,
        verified: VerifiedIdentity | None = None,
        page_url: str | None = None,
        language: str | None = None,
        client_ip: str = "",
        attributes: dict[str, str] | None = None,
    ) -> Bootstrapped:
        """Restore the visitor's session when its token comes back, else start a new one.

        A token from another inbox is refused rather than replaced: it is someone's live session.
        A verified visitor's session comes back only with a token for the same site user; any
        other session token is set aside (never restored) and the visitor gets a fresh session.
        """
        if session_token:
            try:
                visit = await self.access_visit(session_token)
            except NotFound:
                visit = None
            if visit is not None:
                if visit.inbox.id != inbox.id:
                    raise Forbidden("this session belongs to another inbox")
                external_id = verified.external_id if verified else None
                if visit.session.external_id == external_id:
                    await self.store.touch_widget_session(visit.session.id)
                    return Bootstrapped(visit=visit, session_token=session_token, restored=True)
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        if verified is None:
            # A new anonymous visitor: user, conversation and session in one transaction.
            visitor, session = await self.livechat.do_open_visit(
                inbox,
                visitor_name=_visitor_name(),
                session_token_hash=hash_token(token),
                page_url=page_url,
                language=language,
                client_ip=client_ip,
                attributes=attributes or {},
            )
            visit = Visit(inbox=inbox, session=session, visitor=visitor)
            return Bootstrapped(visit=visit, session_token=token, restored=False)
        visitor = await self._visitor(inbox, verified)
        # One conversation per (inbox, visitor), routed to a branch and staffed (livechat).
        conversation_id = await self.livechat.do_open(
            inbox,
            visitor,
            page_url=page_url,
            language=language,
            client_ip=client_ip,
            attributes=attributes or {},
        )
        session = await self.store.add_widget_session(
            token_hash=hash_token(token),
            inbox_id=inbox.id,
            visitor_id=visitor.id,
            conversation_id=conversation_id,
            external_id=verified.external_id if verified else None,
        )
        visit = Visit(inbox=inbox, session=session, visitor=visitor)
        return Bootstrapped(visit=visit, session_token=token, restored=False)

    async def _visitor(self, inbox: Inbox, verified: VerifiedIdentity) -> User:
        """The one user of this verified site user in this inbox (made on their first visit)."""
        name = _visitor_name()
        found = await self.identities.find_visitor(inbox.id, verified.external_id)
        if found is not None:
            return found
        return await self.identities.claim_visitor(
            inbox.id, verified.external_id, name=name, display_name="Visitor"
        )

    async def do_send(
        self,
        visit: Visit,
        *,
        client_msg_id: str,
        body: str,
        attachment_ids: list[str] | None = None,
    ) -> Appended:
        if attachment_ids:
            self.check_attachments(visit.inbox)
        appended = await self.timeline.do_send(
            visit.visitor,
            visit.session.conversation_id,
            client_msg_id=client_msg_id,
            body=body,
            attachment_ids=attachment_ids or [],
            metadata={},
        )
        if appended.created:
            await self.livechat.on_visitor_message(visit.session.conversation_id)
        return appended

    def check_attachments(self, inbox: Inbox) -> None:
        if not inbox.allow_attachments:
            raise Forbidden("this inbox does not take attachments", ErrorCode.ATTACHMENTS_DISABLED)

    def privacy(self, inbox: Inbox) -> tuple[str, str]:
        return (
            inbox.privacy_url or self.settings.privacy_url,
            inbox.privacy_text or self.settings.privacy_text,
        )

    async def is_online(self, inbox: Inbox) -> bool:
        """Within working hours and someone of the inbox's staff connected: else the widget
        shows the offline form (the visitor leaves an address and gets the reply by e-mail)."""
        if not inbox.is_online(datetime.now(UTC)):
            return False
        return await self.livechat.any_staff_online(inbox)

    async def do_leave_offline(
        self, visit: Visit, *, email: str, client_msg_id: str, body: str
    ) -> Appended:
        """The offline form: the visitor's address for the reply, and their message.

        The message goes the way of every other (its outbox row tells the inbox's operators by
        e-mail/push); the operator's reply reaches the visitor by e-mail with a link back.
        """
        if self.notifications is None:
            raise Unavailable("notifications are not set up on this node")
        await self.notifications.store.update_preferences(
            visit.visitor.id, {"email": email, "email_enabled": True}
        )
        return await self.do_send(visit, client_msg_id=client_msg_id, body=body)

    async def do_resume(self, inbox: Inbox, token: str) -> Bootstrapped:
        """A new session in the conversation a reply e-mail's link points back to."""
        if self.notifications is None:
            raise Unavailable("notifications are not set up on this node")
        resume = await self.notifications.read_resume(token)
        state = await self.livechat.store.find_conversation(inbox.id, resume.visitor_id)
        visitor = await self.identity.users.get_user(resume.visitor_id)
        if (
            resume.inbox_id != inbox.id
            or state is None
            or state.conversation_id != resume.conversation_id
            or visitor is None
        ):
            raise Forbidden("this link belongs to another chat")
        token_value = SESSION_PREFIX + secrets.token_urlsafe(32)
        session = await self.store.add_widget_session(
            token_hash=hash_token(token_value),
            inbox_id=inbox.id,
            visitor_id=visitor.id,
            conversation_id=state.conversation_id,
            external_id=None,
        )
        visit = Visit(inbox=inbox, session=session, visitor=visitor)
        return Bootstrapped(visit=visit, session_token=token_value, restored=True)
