"""Conversations, messages and receipts as a member sees and changes them."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from parley import metrics
from parley.core.coalesce import CoalescedLookup
from parley.core.errors import BadInput, Conflict, ErrorCode, Forbidden, NotFound, ParleyError
from parley.core.events import (
    ConversationUpdatedEvent,
    Event,
    MessageUpdatedEvent,
    ReceiptEvent,
)
from parley.core.membercache import MembershipCache
from parley.core.mentions import find_mentions, may_mention
from parley.core.models import (
    Appended,
    Changed,
    ChangeKind,
    Conversation,
    ConversationKind,
    ConversationSummary,
    DeletedBy,
    Member,
    MemberRole,
    Mention,
    Message,
    MessageChange,
    MessageVersion,
    NewMessage,
    ReactionCount,
    Role,
    User,
)
from parley.core.ports import BlobStore, SendGuard
from parley.core.receipts import ReceiptUpdate, advance_receipt
from parley.core.writer import MessageWriter
from parley.storage.attachments import AttachmentStore
from parley.storage.changes import MentionRows, MessageChangeStore
from parley.storage.conversations import ConversationStore
from parley.storage.messages import MessageStore
from parley.storage.users import UserStore

log = logging.getLogger(__name__)

Publish = Callable[[Event], Awaitable[None]]
# Messages whose metadata has this key are written by the server (call records), never by a
# client: a member cannot forge "missed call" lines.
RECORD_METADATA_KEY = "call"
STAFF_ROLES = frozenset({Role.ADMIN, Role.MODERATOR})
# Bulk deletes (personal-data erasure) tombstone this many messages per transaction.
DELETE_CHUNK = 500


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
        changes: MessageChangeStore | None = None,
        blobs: BlobStore | None = None,
        edit_window_seconds: int = 3600,
        publish: Publish = _publish_nowhere,
        on_read_rollback: Callable[[int], None] = lambda _n: None,
        on_send: Callable[[float, bool], None] = lambda _seconds, _failed: None,
        membership_cache_seconds: float = 0.0,
        membership_cache_size: int = 0,
    ) -> None:
        self.users = users
        self.conversations = conversations
        self.messages = messages
        self.attachments = attachments
        self.writer = writer
        self.changes = changes or MessageChangeStore(messages.db)
        self.blobs = blobs
        self.edit_window = timedelta(seconds=edit_window_seconds)
        self.publish = publish
        self.on_read_rollback = on_read_rollback
        # Told how long each store took and whether it failed (the send-stall gate).
        self.on_send = on_send
        # Moderation's filters and sanctions (features/moderation); None: every send goes through.
        self.guard: SendGuard | None = None
        # Every send checks membership: checks arriving together share one query.
        self._memberships = CoalescedLookup(conversations.find_memberships)
        # ... and a repeated check of the send path costs none (see `cached_access`).
        self.member_cache: MembershipCache[Access] = MembershipCache(
            ttl=membership_cache_seconds, max_size=membership_cache_size
        )
        conversations.on_members_changed.append(self.forget_memberships)

    async def access_conversation(self, actor: User, conversation_id: int) -> Access:
        """The conversation if `actor` is a member; otherwise 404, whether it exists or not."""
        found = await self._memberships.get((conversation_id, actor.id))
        if found is None:
            raise NotFound("no such conversation", ErrorCode.NOT_FOUND)
        return Access(*found)

    async def cached_access(self, actor: User, conversation_id: int) -> Access:
        """`access_conversation` answered from this node's membership cache when it can.

        Only the membership itself and the fields that never change once a conversation and a
        membership exist (ids, the conversation's kind, the member's role) may be read from
        the result: its counters (`conversation.last_seq`, the member's `delivered_seq` and
        `read_seq`) and the title can be up to PARLEY_MEMBERSHIP_CACHE_SECONDS old. Callers
        that need them fresh keep `access_conversation`.
        """
        cached = self.member_cache.get(conversation_id, actor.id)
        if cached is not None:
            metrics.MEMBERSHIP_CACHE.labels("hit").inc()
            return cached
        metrics.MEMBERSHIP_CACHE.labels("miss").inc()
        token = self.member_cache.token()
        access = await self.access_conversation(actor, conversation_id)
        self.member_cache.put(conversation_id, actor.id, access, token=token)
        return access

    def forget_memberships(self, conversation_id: int) -> None:
        """The conversation's members changed (here, or on another node: its
        `conversation.updated` event): its next checks ask the database again."""
        self.member_cache.invalidate_conversation(conversation_id)

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
        reply_to_id: int | None = None,
        thread_root_id: int | None = None,
    ) -> Appended:
        """Store a message once; a retry with the same `client_msg_id` returns the original.

        `reply_to_id` quotes a message of the conversation; `thread_root_id` puts the message
        in that message's thread (a reply's own root, if it names a reply). `@name` of a member
        and `@here` become the message's mentions. The moderation filters run before it is
        stored (a held send never gets a seq). The membership check is `cached_access`: of
        it, only the conversation's id and kind are read (by the moderation filters).
        """
        access = await self.cached_access(actor, conversation_id)
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
        root: Message | None = None
        if reply_to_id is not None or thread_root_id is not None:
            try:
                root = await self._check_reply(conversation_id, reply_to_id, thread_root_id)
            except ParleyError:
                # A retry of a send stored before its target was deleted still gets its answer.
                stored = await self.messages.find_by_client_msg_id(
                    conversation_id, actor.id, client_msg_id
                )
                if stored is None:
                    raise
                return Appended(stored, created=False)
        mentions = await self._mentions_in(conversation_id, actor.id, body)
        send = NewMessage(
            conversation_id=conversation_id,
            sender_id=actor.id,
            client_msg_id=client_msg_id,
            body=body,
            attachments=refs,
            metadata=dict(metadata),
            reply_to_id=reply_to_id,
            thread_root_id=root.id if root else None,
            thread_root_sender_id=root.sender_id if root else None,
            mentions=mentions.named,
            mentions_here=mentions.here,
            here_ids=mentions.here_ids,
        )
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

    async def _check_reply(
        self, conversation_id: int, reply_to_id: int | None, thread_root_id: int | None
    ) -> Message | None:
        """Check what a send quotes and the thread it joins; returns the thread's root."""
        wanted = [i for i in (reply_to_id, thread_root_id) if i is not None]
        found = {m.id: m for m in await self.messages.find_messages(wanted)}
        for field, message_id in (("reply_to_id", reply_to_id), ("thread_root_id", thread_root_id)):
            if message_id is None:
                continue
            message = found.get(message_id)
            if message is None or message.conversation_id != conversation_id:
                raise BadInput(f"{field}: no message {message_id} in this conversation")
            if message.deleted:
                raise Conflict(
                    f"{field}: message {message_id} was deleted", ErrorCode.MESSAGE_DELETED
                )
        if thread_root_id is None:
            return None
        root = found[thread_root_id]
        if root.thread_root_id is not None:  # a reply in a thread: its thread is meant
            root = await self.messages.get_message(root.thread_root_id) or root
        return root

    async def _mentions_in(self, conversation_id: int, sender_id: int, body: str) -> MentionRows:
        """The members `body` names; one lookup, and only when the text has an "@" at all."""
        if not may_mention(body):
            return MentionRows()
        found = find_mentions(body)
        if not found.names and not found.here:
            return MentionRows()
        ids = await self.conversations.find_members_named(
            conversation_id, found.names, everyone=found.here
        )
        named = [ids[name] for name in found.names if name in ids and ids[name] != sender_id]
        named = list(dict.fromkeys(named))
        here_ids = sorted(set(ids.values()) - set(named) - {sender_id}) if found.here else []
        return MentionRows(named=named, here=found.here, here_ids=here_ids)

    # -- one message: read, edit, delete, react --------------------------------------------------

    async def access_message(self, actor: User, conversation_id: int, message_id: int) -> Message:
        """A message of a conversation `actor` is a member of; 404 otherwise, alike."""
        await self.access_conversation(actor, conversation_id)
        message = await self.messages.get_message(message_id)
        if message is None or message.conversation_id != conversation_id:
            raise NotFound("no such message")
        return message

    def check_may_edit(self, actor: User, message: Message) -> None:
        """Only the author edits, within PARLEY_EDIT_WINDOW_SECONDS (staff: any time)."""
        if message.deleted:
            raise Conflict("the message was deleted", ErrorCode.MESSAGE_DELETED)
        if message.sender_id != actor.id:
            raise Forbidden("only its author can edit a message")
        if actor.role in STAFF_ROLES:
            return
        if datetime.now(UTC) - message.created_at > self.edit_window:
            raise Forbidden(
                f"messages can be edited for {int(self.edit_window.total_seconds())} s after "
                "sending; delete it and send a new one instead",
                ErrorCode.EDIT_WINDOW_CLOSED,
            )

    def check_may_delete(self, actor: User, message: Message) -> bool:
        """Authors delete their own messages, staff (admins, moderators) anyone's.

        Returns whether the delete is a staff action (it is recorded as such).
        """
        if message.sender_id == actor.id:
            return False
        if actor.role in STAFF_ROLES:
            return True
        raise Forbidden("only its author or a moderator can delete a message")

    async def do_edit_message(
        self,
        actor: User,
        conversation_id: int,
        message_id: int,
        *,
        body: str,
        client_op_id: str | None = None,
    ) -> Changed:
        """Replace a message's text (the old one is kept as a version) and tell every member.

        Idempotent: a retry with the same `client_op_id`, or the same text, changes nothing.
        """
        message = await self._message_in(conversation_id, message_id)
        if not body.strip() and not message.attachments:
            raise BadInput("a message needs a body or an attachment; delete it instead")
        mentions = await self._mentions_in(conversation_id, message.sender_id, body)
        changed = await self.changes.edit_message(
            message_id, actor_id=actor.id, client_op_id=client_op_id, body=body, mentions=mentions
        )
        await self._announce(changed, ChangeKind.EDITED)
        return changed

    async def do_delete_message(
        self,
        actor: User | None,
        conversation_id: int,
        message_id: int,
        *,
        reason: str | None = None,
        by_staff: bool = False,
    ) -> Changed:
        """Turn a message into a tombstone and tell every member; its seq stays.

        For routes (after `check_may_delete`), moderation (`by_staff`, with a reason) and
        personal-data erasure (`actor` None). Deleting a tombstone again changes nothing.
        """
        await self._message_in(conversation_id, message_id)
        (changed,) = await self.do_delete_messages(
            [message_id], actor=actor, reason=reason, by=_deleted_by(actor, by_staff)
        )
        return changed

    async def do_delete_messages(
        self,
        message_ids: list[int],
        *,
        actor: User | None,
        reason: str | None,
        by: DeletedBy,
    ) -> list[Changed]:
        """`do_delete_message` for many messages of any conversations, without any checks."""
        results: list[Changed] = []
        for start in range(0, len(message_ids), DELETE_CHUNK):
            chunk = message_ids[start : start + DELETE_CHUNK]
            tombstones = await self.changes.delete_messages(
                chunk, by=by, actor_id=actor.id if actor else None, reason=reason
            )
            for changed in tombstones.changes:
                await self._announce(changed, ChangeKind.DELETED)
            await self._remove_files(tombstones.orphaned_attachments)
            results += tombstones.changes
        return results

    async def do_delete_messages_from(self, sender_id: int, *, reason: str | None) -> int:
        """Tombstone every message a user sent (personal-data erasure); returns how many."""
        deleted = 0
        after = 0
        while ids := await self.messages.list_message_ids_by_sender(
            sender_id, after_id=after, limit=DELETE_CHUNK
        ):
            changes = await self.do_delete_messages(
                ids, actor=None, reason=reason, by=DeletedBy.SYSTEM
            )
            deleted += sum(1 for change in changes if change.changed)
            after = ids[-1]
        return deleted

    async def do_react(
        self, actor: User, conversation_id: int, message_id: int, emoji: str, *, add: bool
    ) -> Changed:
        """Add or remove the actor's `emoji`; repeating either changes nothing (retries)."""
        await self._message_in(conversation_id, message_id)
        changed = await self.changes.react(message_id, user_id=actor.id, emoji=emoji, add=add)
        await self._announce(changed, ChangeKind.REACTIONS)
        return changed

    async def list_versions(
        self, actor: User, conversation_id: int, message_id: int
    ) -> list[MessageVersion]:
        """A message's edit history, oldest first (a tombstone has none)."""
        message = await self.access_message(actor, conversation_id, message_id)
        if message.deleted:
            return []
        return await self.changes.list_versions(message)

    async def list_reactions(
        self, actor: User, conversation_id: int, message_id: int
    ) -> list[ReactionCount]:
        await self.access_message(actor, conversation_id, message_id)
        return await self.changes.list_reactions(message_id)

    async def list_mentions(self, message_id: int) -> list[Mention]:
        """Who a message mentions (for notifications): named members, and whom @here reached."""
        return await self.messages.list_mentions(message_id)

    async def _message_in(self, conversation_id: int, message_id: int) -> Message:
        message = await self.messages.get_message(message_id)
        if message is None or message.conversation_id != conversation_id:
            raise NotFound("no such message")
        return message

    async def _announce(self, changed: Changed, kind: ChangeKind) -> None:
        if changed.pos is not None:
            metrics.MESSAGE_CHANGES.labels(kind.value).inc()
            await self.publish(
                MessageUpdatedEvent.of(MessageChange(changed.pos, kind, changed.message))
            )

    async def _remove_files(self, attachment_ids: list[str]) -> None:
        """Delete the bytes of files no message uses any more (their rows are gone already)."""
        if self.blobs is None:
            return
        for attachment_id in attachment_ids:
            try:
                await self.blobs.delete(attachment_id)
            except OSError:
                log.exception("could not delete the file of attachment %s", attachment_id)

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


def _deleted_by(actor: User | None, by_staff: bool) -> DeletedBy:
    if actor is None:
        return DeletedBy.SYSTEM
    return DeletedBy.STAFF if by_staff else DeletedBy.AUTHOR
