"""Conversations, messages and receipts as a member sees and changes them."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from parley.core.coalesce import CoalescedLookup
from parley.core.errors import BadInput, Conflict, ErrorCode, Forbidden, NotFound
from parley.core.events import ConversationUpdatedEvent, Event, ReceiptEvent
from parley.core.models import (
    Appended,
    Conversation,
    ConversationKind,
    ConversationSummary,
    Member,
    MemberRole,
    Message,
    NewMessage,
    Role,
    User,
)
from parley.core.ports import SendGuard
from parley.core.receipts import ReceiptUpdate, advance_receipt
from parley.core.writer import MessageWriter
from parley.storage.attachments import AttachmentStore
from parley.storage.conversations import ConversationStore
from parley.storage.messages import MessageStore
from parley.storage.users import UserStore

Publish = Callable[[Event], Awaitable[None]]
# Messages whose metadata has this key are written by the server (call records), never by a
# client: a member cannot forge "missed call" lines.
RECORD_METADATA_KEY = "call"


async def _publish_nowhere(_event: Event) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Access:
    """A user's authorized view of one conversation."""

    conversation: Conversation
    member: Member


class Timeline:
    def __init__(
        self,
        *,
        users: UserStore,
        conversations: ConversationStore,
        messages: MessageStore,
        attachments: AttachmentStore,
        writer: MessageWriter,
        publish: Publish = _publish_nowhere,
        on_read_rollback: Callable[[int], None] = lambda _n: None,
        on_send: Callable[[float, bool], None] = lambda _seconds, _failed: None,
    ) -> None:
        self.users = users
        self.conversations = conversations
        self.messages = messages
        self.attachments = attachments
        self.writer = writer
        self.publish = publish
        self.on_read_rollback = on_read_rollback
        # Told how long each store took and whether it failed (the send-stall gate).
        self.on_send = on_send
        # Moderation's filters and sanctions (features/moderation); None: every send goes through.
        self.guard: SendGuard | None = None
        # Every send checks membership: checks arriving together share one query.
        self._memberships = CoalescedLookup(conversations.find_memberships)

    async def access_conversation(self, actor: User, conversation_id: int) -> Access:
        """The conversation if `actor` is a member; otherwise 404, whether it exists or not."""
        found = await self._memberships.get((conversation_id, actor.id))
        if found is None:
            raise NotFound("no such conversation", ErrorCode.NOT_FOUND)
        return Access(*found)

    async def check_user_names(self, names: list[str]) -> list[User]:
        """The users named; 422 naming those that do not exist.

        Website visitors read as unknown here: they belong to their own live-chat conversation
        and nobody may start another with them or add them anywhere.
        """
        unique = list(dict.fromkeys(names))
        found = await self.users.find_users_by_name(unique) if unique else []
        found = [user for user in found if not user.visitor]
        missing = sorted(set(unique) - {user.name for user in found})
        if missing:
            raise BadInput(f"unknown users: {', '.join(missing)}", ErrorCode.VALIDATION)
        return found

    async def do_create_conversation(
        self, actor: User, *, kind: ConversationKind, title: str, member_names: list[str]
    ) -> tuple[Conversation, bool]:
        if actor.visitor:
            raise Forbidden(
                "website visitors write in their own conversation only",
                ErrorCode.VISITOR_NOT_REACHABLE,
            )
        others = [user for user in await self.check_user_names(member_names) if user.id != actor.id]
        direct_key = None
        if kind is ConversationKind.DIRECT:
            if len(others) != 1:
                raise BadInput("a direct conversation has exactly one other member")
            low, high = sorted((actor.id, others[0].id))
            direct_key = f"{low}:{high}"
        conversation, created = await self.conversations.create_conversation(
            kind=kind,
            title=title,
            created_by=actor.id,
            member_ids=[user.id for user in others],
            direct_key=direct_key,
        )
        if created:
            await self.publish(
                ConversationUpdatedEvent(
                    conversation_id=conversation.id,
                    member_ids=[actor.id, *(user.id for user in others)],
                )
            )
        return conversation, created

    async def list_conversations(self, actor: User) -> list[ConversationSummary]:
        return await self.conversations.list_conversations_for(actor.id)

    async def list_members(self, actor: User, conversation_id: int) -> list[tuple[Member, User]]:
        """The members, each with their user, so clients can show names."""
        await self.access_conversation(actor, conversation_id)
        members = await self.conversations.list_members(conversation_id)
        users = {u.id: u for u in await self.users.find_users_by_id([m.user_id for m in members])}
        return [(member, users[member.user_id]) for member in members]

    async def do_add_members(
        self, actor: User, conversation_id: int, names: list[str]
    ) -> list[int]:
        access = await self.access_conversation(actor, conversation_id)
        if access.conversation.kind is ConversationKind.DIRECT:
            raise Conflict("members of a direct conversation cannot change")
        if await self.conversations.has_visitor(conversation_id):
            raise Forbidden(
                "a website visitor's conversation is staffed by its inbox: assign it from the "
                "console (PATCH /v1/livechat/conversations/{id}) instead of adding members",
                ErrorCode.VISITOR_NOT_REACHABLE,
            )
        users = await self.check_user_names(names)
        if self.guard is not None:
            self.guard.check_may_join(conversation_id, [u.id for u in users])
        added = await self.conversations.add_members(conversation_id, [u.id for u in users])
        if added:
            await self._announce_members(conversation_id)
        return added

    async def do_remove_member(self, actor: User, conversation_id: int, user_id: int) -> None:
        access = await self.access_conversation(actor, conversation_id)
        if access.conversation.kind is ConversationKind.DIRECT:
            raise Conflict("members of a direct conversation cannot change")
        may_remove_others = access.member.role is MemberRole.OWNER or actor.role is Role.ADMIN
        if user_id != actor.id and not may_remove_others:
            raise Forbidden("only the conversation's owner can remove other members")
        if not await self.conversations.remove_member(conversation_id, user_id):
            raise NotFound("that user is not a member")
        await self._announce_members(conversation_id, removed_ids=[user_id])

    async def _announce_members(
        self, conversation_id: int, removed_ids: list[int] | None = None
    ) -> None:
        member_ids = [m.user_id for m in await self.conversations.list_members(conversation_id)]
        await self.publish(
            ConversationUpdatedEvent(
                conversation_id=conversation_id,
                member_ids=member_ids,
                removed_ids=removed_ids or [],
            )
        )

    async def do_send(
        self,
        actor: User,
        conversation_id: int,
        *,
        client_msg_id: str,
        body: str,
        attachment_ids: list[str],
        metadata: dict[str, object],
    ) -> Appended:
        """Store a message once; a retry with the same `client_msg_id` returns the original."""
        access = await self.access_conversation(actor, conversation_id)
        if RECORD_METADATA_KEY in metadata:
            raise BadInput(
                f"metadata key {RECORD_METADATA_KEY!r} is reserved for the server's call records"
            )
        refs = []
        if attachment_ids:
            wanted = list(dict.fromkeys(attachment_ids))
            found = {a.id: a for a in await self.attachments.find_attachments(wanted)}
            for attachment_id in wanted:
                attachment = found.get(attachment_id)
                if (
                    attachment is None
                    or attachment.conversation_id != conversation_id
                    or attachment.uploader_id != actor.id
                ):
                    raise BadInput(
                        f"attachment {attachment_id!r} is not one you uploaded here",
                        ErrorCode.ATTACHMENT_UNAVAILABLE,
                    )
                refs.append(attachment.ref())
        if not body.strip() and not refs:
            raise BadInput("a message needs a body or an attachment")
        send = NewMessage(
            conversation_id=conversation_id,
            sender_id=actor.id,
            client_msg_id=client_msg_id,
            body=body,
            attachments=refs,
            metadata=dict(metadata),
        )
        # The moderation filters run before the message is stored (held sends never get a seq).
        if self.guard is not None:
            stored = await self.guard.screen_send(actor, access.conversation, send)
            if stored is not None:
                return Appended(stored, created=False)
        started = time.monotonic()
        try:
            appended = await self.writer.append(send)
        except Exception:
            self.on_send(time.monotonic() - started, True)
            raise
        self.on_send(time.monotonic() - started, False)
        return appended

    async def do_append_record(
        self,
        conversation_id: int,
        *,
        sender_id: int,
        client_msg_id: str,
        body: str,
        metadata: dict[str, object],
    ) -> Appended:
        """A message the server writes on a member's behalf (a call's record), with its seq.

        Idempotent like any send: writing the same `client_msg_id` again returns the original,
        so two nodes recording one call store it once.
        """
        return await self.writer.append(
            NewMessage(
                conversation_id=conversation_id,
                sender_id=sender_id,
                client_msg_id=client_msg_id,
                body=body,
                metadata=dict(metadata),
            )
        )

    async def list_messages(
        self,
        actor: User,
        conversation_id: int,
        *,
        after: int | None,
        before: int | None,
        limit: int,
    ) -> tuple[Conversation, list[Message]]:
        """A page of the timeline, and the conversation as it was just before it was read."""
        access = await self.access_conversation(actor, conversation_id)
        found = await self.messages.list_messages(
            conversation_id, after=after, before=before, limit=limit
        )
        return access.conversation, found

    async def do_receipt(
        self,
        actor: User,
        conversation_id: int,
        *,
        delivered_seq: int | None,
        read_seq: int | None,
    ) -> ReceiptUpdate:
        """Move the actor's cursors forward; stale values are ignored and counted."""
        before: list[Member] = []

        def advance(member: Member, last_seq: int) -> ReceiptUpdate:
            before.append(member)
            return advance_receipt(
                delivered_seq=member.delivered_seq,
                read_seq=member.read_seq,
                last_seq=last_seq,
                new_delivered=delivered_seq,
                new_read=read_seq,
            )

        outcome = await self.conversations.apply_receipt(conversation_id, actor.id, advance)
        if outcome is None:
            raise NotFound("no such conversation", ErrorCode.NOT_FOUND)
        if outcome.rollbacks_ignored:
            self.on_read_rollback(outcome.rollbacks_ignored)
        old = before[-1]
        if (outcome.delivered_seq, outcome.read_seq) != (old.delivered_seq, old.read_seq):
            await self.publish(
                ReceiptEvent(
                    conversation_id=conversation_id,
                    user_id=actor.id,
                    delivered_seq=outcome.delivered_seq,
                    read_seq=outcome.read_seq,
                )
            )
        return outcome
