"""Live chat: opening and routing visitor conversations, and the operator console's actions.

Staff of a conversation are the admins, its inbox's operators, its branch's operators and its
assignee. Everyone else (the visitor included, though a member) gets 404 here: notes, status,
assignment and the staff events never reach them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from parley.core.audit import AuditEntry, AuditFilter, Target
from parley.core.errors import ErrorCode, Forbidden, InvalidValue, NotFound
from parley.core.events import (
    ConversationUpdatedEvent,
    Event,
    LivechatConversationEvent,
    LivechatNoteEvent,
)
from parley.core.inboxes import Inbox, WidgetSession
from parley.core.livechat import (
    Branch,
    CannedReply,
    ConversationFilter,
    ListedConversation,
    LivechatConversation,
    Note,
    Priority,
    Status,
)
from parley.core.models import Role, User
from parley.core.visitor_names import visitor_label
from parley.features.livechat import routing
from parley.features.livechat.directory import Directory
from parley.features.livechat.geoip import GeoIP
from parley.services.audit import AuditLog
from parley.settings import Settings
from parley.storage.conversations import ConversationStore
from parley.storage.inboxes import InboxStore
from parley.storage.livechat import LivechatStore
from parley.storage.users import UserStore

log = logging.getLogger(__name__)

Publish = Callable[[Event], Awaitable[None]]
Online = Callable[[list[int]], Awaitable[set[int]]]


async def _publish_nowhere(_event: Event) -> None:
    return None


async def _nobody_online(_ids: list[int]) -> set[int]:
    return set()


@dataclass(frozen=True, slots=True)
class StaffView:
    """A conversation as staff see it, with everything the console shows beside it."""

    listed: ListedConversation
    inbox: Inbox
    visitor: User | None
    assignee: User | None
    branch: Branch | None


@dataclass(frozen=True, slots=True)
class StaffMember:
    user: User
    online: bool


def parse_status(value: str) -> Status:
    try:
        return Status(value)
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise InvalidValue(f"status {value!r} is not one of {allowed}") from None


def parse_priority(value: str) -> Priority:
    try:
        return Priority(value)
    except ValueError:
        allowed = ", ".join(p.value for p in Priority)
        raise InvalidValue(f"priority {value!r} is not one of {allowed}") from None


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _person(user: User | None) -> dict[str, Any] | None:
    return {"id": user.id, "name": user.name} if user else None


def _title(inbox: Inbox, visitor_name: str) -> str:
    return f"{inbox.name}: {visitor_name}"[:200]


def conversation_item(view: StaffView) -> dict[str, Any]:
    """The console's ConversationItem (docs/livechat.md), on REST and in staff events alike."""
    state, last = view.listed.state, view.listed.last_message
    return {
        "conversation_id": state.conversation_id,
        "inbox_id": state.inbox_id,
        "inbox_name": view.inbox.name,
        "visitor": {
            "id": state.visitor_id,
            "name": visitor_label(view.visitor) if view.visitor else "",
            "handle": view.visitor.name if view.visitor else "",
        },
        "status": state.status.value,
        "priority": state.priority.value,
        "assignee": _person(view.assignee),
        "branch": {"id": view.branch.id, "name": view.branch.name} if view.branch else None,
        "page_url": state.page_url,
        "language": state.language,
        "country": state.country,
        "attributes": {str(k): str(v) for k, v in state.attributes.items()},
        "created_at": iso(state.created_at),
        "updated_at": iso(state.updated_at),
        "last_message_at": iso(last.created_at if last else state.last_message_at),
        "last_message": (
            {
                "body": last.body,
                "sender_id": last.sender_id,
                "seq": last.seq,
                "deleted": last.deleted,
            }
            if last
            else None
        ),
    }


def note_item(note: Note, author: User | None) -> dict[str, Any]:
    return {
        "id": note.id,
        "conversation_id": note.conversation_id,
        "author": {"id": note.author_id, "name": author.name if author else ""},
        "body": note.body,
        "created_at": iso(note.created_at),
    }


ACTIVITY_ACTIONS = "livechat."  # livechat.assign and livechat.update, as the audit log has them
ACTIVITY_LIMIT = 500


def _activity_text(entry: AuditEntry, actor: str, field: str, names: dict[int, str]) -> str:
    before = entry.before.get(field) if isinstance(entry.before, dict) else None
    after = entry.after[field]
    if field == "assignee_id":
        if after is None:
            return f"{actor} unassigned this"
        if after == entry.actor_id:
            return f"{actor} self-assigned this"
        return f"{actor} assigned this to {names.get(after, f'user {after}')}"
    label = field.replace("_", " ")
    old, new = str(before or "").capitalize(), str(after or "").capitalize()
    if not old:
        return f"{actor} set {label} to {new}"
    return f"{actor} changed {label} from {old} to {new}"


def activity_items(entries: list[AuditEntry], names: dict[int, str]) -> list[dict[str, Any]]:
    """The timeline's activity entries: one per changed field, oldest first."""
    items = []
    for entry in sorted(entries, key=lambda e: e.id):
        before = entry.before if isinstance(entry.before, dict) else {}
        after = entry.after if isinstance(entry.after, dict) else {}
        actor = names.get(entry.actor_id, entry.actor) if entry.actor_id else entry.actor
        for field in ("assignee_id", "status", "priority"):
            if field not in after or before.get(field) == after[field]:
                continue
            items.append(
                {
                    "id": f"{entry.id}:{field}",
                    "field": field.removesuffix("_id"),
                    "actor": {"id": entry.actor_id, "name": actor},
                    "before": before.get(field),
                    "after": after[field],
                    "text": _activity_text(entry, actor, field, names),
                    "created_at": iso(entry.at),
                }
            )
    return items


class Livechat:
    def __init__(
        self,
        *,
        settings: Settings,
        store: LivechatStore,
        inboxes: InboxStore,
        users: UserStore,
        conversations: ConversationStore,
        audit: AuditLog,
        geoip: GeoIP | None = None,
        publish: Publish = _publish_nowhere,
        online: Online = _nobody_online,
        directory: Directory | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.inboxes = inboxes
        self.users = users
        self.conversations = conversations
        self.audit = audit
        self.geoip = geoip or GeoIP("")
        self.publish = publish
        self.online = online
        # Inboxes, branches and admins as this node keeps them (no cache unless given one).
        self.directory = directory or Directory(inboxes, store, ttl=0)
        # Conversations with an announcement under way -> None, or another one is wanted after
        # it (True: to the members among the staff too).
        self._announcing: dict[int, bool | None] = {}
        self._announcers: set[asyncio.Task[None]] = set()

    # -- opening, from the widget ---------------------------------------------------------------

    async def do_open(
        self,
        inbox: Inbox,
        visitor: User,
        *,
        page_url: str | None,
        language: str | None,
        client_ip: str,
        attributes: dict[str, str],
    ) -> int:
        """The visitor's conversation in this inbox (its id); routed and staffed when new.

        Idempotent per (inbox, visitor) and safe when calls race, on one node or many: the
        database's unique key picks one winner, the losers' transactions roll back whole.
        """
        existing = await self.store.find_conversation(inbox.id, visitor.id)
        if existing is not None:
            return existing.conversation_id
        member_ids, values = await self._staffing(inbox, page_url, language, client_ip)
        member_ids = [uid for uid in member_ids if uid != visitor.id]
        state, created = await self.store.open_conversation(
            inbox_id=inbox.id,
            visitor_id=visitor.id,
            title=_title(inbox, visitor.name),
            member_ids=member_ids,
            values={**values, "attributes": dict(attributes)},
        )
        if created:
            await self._opened(state.conversation_id, [visitor.id, *member_ids])
        return state.conversation_id

    async def do_open_visit(
        self,
        inbox: Inbox,
        *,
        visitor_name: str,
        session_token_hash: str,
        page_url: str | None,
        language: str | None,
        client_ip: str,
        attributes: dict[str, str],
    ) -> tuple[User, WidgetSession]:
        """A new anonymous visitor, their routed and staffed conversation, and their session.

        All written in one transaction (`LivechatStore.open_visit`): 200 visitors arriving at
        once queue for the writer once each, not three times.
        """
        member_ids, values = await self._staffing(inbox, page_url, language, client_ip)
        visitor, state, session = await self.store.open_visit(
            visitor_name=visitor_name,
            inbox_id=inbox.id,
            title=_title(inbox, visitor_name),
            member_ids=member_ids,
            values={**values, "attributes": dict(attributes)},
            session_token_hash=session_token_hash,
        )
        await self._opened(state.conversation_id, [visitor.id, *member_ids])
        return visitor, session

    async def _staffing(
        self, inbox: Inbox, page_url: str | None, language: str | None, client_ip: str
    ) -> tuple[list[int], dict[str, Any]]:
        """Who a new conversation's members are, and its routing values (branch, assignee...)."""
        country = self.geoip.country(client_ip)
        branch = await self._route(
            inbox, routing.Visit(page_url=page_url, language=language, country=country)
        )
        operators = await self._users_named(
            [*inbox.operators, *(branch.operators if branch else [])]
        )
        assignee_id = await self._pick_assignee(inbox, branch) if inbox.auto_assign else None
        values = {
            "branch_id": branch.id if branch else None,
            "assignee_id": assignee_id,
            "page_url": page_url,
            "language": language,
            "country": country,
        }
        return [u.id for u in operators], values

    async def _opened(self, conversation_id: int, member_ids: list[int]) -> None:
        await self.publish(
            ConversationUpdatedEvent(conversation_id=conversation_id, member_ids=member_ids)
        )
        await self._announce(conversation_id)

    async def on_visitor_message(self, conversation_id: int) -> None:
        """The visitor wrote: reopen a resolved or closed conversation and tell its staff.

        Staff who are members hear the message itself (the console moves the conversation up
        from it), so unless the conversation reopened only staff outside it (admins, operators
        added since it opened) get `livechat.conversation`: a visitor's message wakes an
        operator's long-poll once, not twice. The reopening is done before the send is answered;
        the announcement follows beside it, one at a time per conversation (a burst of messages
        makes at most two).
        """
        recorded = await self.store.record_visitor_message(conversation_id)
        if recorded is not None:
            self._announce_soon(conversation_id, to_members=recorded[1])

    async def on_message_released(self, conversation_id: int, sender_id: int) -> None:
        """A moderator approved a held message: if the visitor wrote it, as `on_visitor_message`."""
        listed = await self.store.get_conversation(conversation_id)
        if listed is not None and listed.state.visitor_id == sender_id:
            await self.on_visitor_message(conversation_id)

    async def stop(self, timeout: float = 5) -> None:
        """Let announcements under way finish (they hold database connections); cancel the late."""
        if not self._announcers:
            return
        _, late = await asyncio.wait(set(self._announcers), timeout=timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    def _announce_soon(self, conversation_id: int, *, to_members: bool) -> None:
        if conversation_id in self._announcing:
            wanted = self._announcing[conversation_id]
            self._announcing[conversation_id] = to_members or wanted is True
            return
        self._announcing[conversation_id] = None
        task = asyncio.create_task(self._announce_until_quiet(conversation_id, to_members))
        self._announcers.add(task)
        task.add_done_callback(self._announcers.discard)

    async def _announce_until_quiet(self, conversation_id: int, to_members: bool) -> None:
        try:
            while True:
                await self._announce(conversation_id, to_members=to_members)
                wanted = self._announcing.get(conversation_id)
                if wanted is None:
                    break
                to_members, self._announcing[conversation_id] = wanted, None
        except Exception:
            log.exception("announcing live-chat conversation %d failed", conversation_id)
        finally:
            self._announcing.pop(conversation_id, None)

    async def _route(self, inbox: Inbox, visit: routing.Visit) -> Branch | None:
        branch_id = routing.route(
            inbox.routing_rules,
            visit,
            inbox_branch_id=inbox.branch_id,
            default_branch_id=self.settings.default_branch_id,
        )
        # A rule's branch may have been deleted since; the conversation then has none.
        return await self.directory.get_branch(branch_id) if branch_id is not None else None

    async def _pick_assignee(self, inbox: Inbox, branch: Branch | None) -> int | None:
        """The online operator (branch's, else inbox's) with the fewest open+pending ones."""
        names = branch.operators if branch and branch.operators else inbox.operators
        candidates = [u.id for u in await self._users_named(names)]
        online = await self.online(candidates) if candidates else set()
        ready = [uid for uid in candidates if uid in online]
        if not ready:
            return None
        load = await self.store.count_active_assigned(ready)
        return min(ready, key=lambda uid: (load[uid], uid))

    async def _users_named(self, names: list[str]) -> list[User]:
        """Users by name; names that no longer exist are skipped (operators lists are text)."""
        unique = list(dict.fromkeys(names))
        return await self.users.find_users_by_name(unique) if unique else []

    # -- who is staff ----------------------------------------------------------------------------

    async def _branches_of(self, actor: User) -> list[Branch]:
        return [b for b in await self.directory.list_branches() if actor.name in b.operators]

    def _is_staff(
        self, actor: User, inbox: Inbox, state: LivechatConversation, branch: Branch | None
    ) -> bool:
        return (
            actor.role is Role.ADMIN
            or actor.name in inbox.operators
            or (branch is not None and actor.name in branch.operators)
            or state.assignee_id == actor.id
        )

    async def _staff_ids(self, inbox: Inbox, state: LivechatConversation) -> list[int]:
        branch = await self.directory.get_branch(state.branch_id) if state.branch_id else None
        names = [*inbox.operators, *(branch.operators if branch else [])]
        ids = {u.id for u in await self._users_named(names)}
        ids |= {u.id for u in await self.directory.list_admins()}
        if state.assignee_id is not None:
            ids.add(state.assignee_id)
        ids.discard(state.visitor_id)
        return sorted(ids)

    async def _inbox_staff(self, inbox: Inbox) -> list[User]:
        """Who may take this inbox's conversations: admins, its operators, its branches'."""
        branch_ids = {*routing.rule_branch_ids(inbox.routing_rules)}
        for fallback in (inbox.branch_id, self.settings.default_branch_id):
            if fallback is not None:
                branch_ids.add(fallback)
        names = list(inbox.operators)
        for branch in await self.directory.list_branches():
            if branch.id in branch_ids:
                names += branch.operators
        users = {u.id: u for u in await self._users_named(names)}
        for admin in await self.directory.list_admins():
            users[admin.id] = admin
        return sorted(users.values(), key=lambda u: u.name)

    async def check_default_branch(self) -> str | None:
        """What is wrong with PARLEY_DEFAULT_BRANCH_ID, or None when it is unset or exists."""
        branch_id = self.settings.default_branch_id
        if branch_id is None or await self.directory.get_branch(branch_id) is not None:
            return None
        return (
            f"PARLEY_DEFAULT_BRANCH_ID={branch_id} names no branch; unrouted conversations get "
            "no branch (create it with `parley branch add` or fix the setting)"
        )

    # -- the console -----------------------------------------------------------------------------

    async def list_inboxes(self, actor: User) -> list[Inbox]:
        """Inboxes the actor works in (admins: all)."""
        inboxes = await self.directory.list_inboxes()
        if actor.role is Role.ADMIN:
            return inboxes
        mine = {b.id for b in await self._branches_of(actor)}
        if self.settings.default_branch_id in mine:
            return inboxes
        return [
            inbox
            for inbox in inboxes
            if actor.name in inbox.operators
            or inbox.branch_id in mine
            or mine.intersection(routing.rule_branch_ids(inbox.routing_rules))
        ]

    async def access_inbox(self, actor: User, inbox_id: int) -> Inbox:
        for inbox in await self.list_inboxes(actor):
            if inbox.id == inbox_id:
                return inbox
        raise NotFound("no such inbox")

    async def list_conversations(
        self,
        actor: User,
        *,
        inbox_id: int | None,
        status: str | None,
        priority: str | None,
        assignee: str | None,
        limit: int,
    ) -> list[StaffView]:
        wanted: dict[str, Any] = {
            "inbox_id": inbox_id,
            # "open,pending": any of them (the console's default view).
            "statuses": tuple(parse_status(s) for s in status.split(",")) if status else (),
            "priority": parse_priority(priority) if priority else None,
            "limit": limit,
        }
        if assignee == "me":
            wanted["assignee_id"] = actor.id
        elif assignee == "none":
            wanted["unassigned"] = True
        elif assignee:
            if not assignee.isdigit():
                raise InvalidValue("assignee is me, none or a user id")
            wanted["assignee_id"] = int(assignee)
        if actor.role is not Role.ADMIN:
            wanted["visible_inbox_ids"] = [
                i.id for i in await self.directory.list_inboxes() if actor.name in i.operators
            ]
            wanted["visible_branch_ids"] = [b.id for b in await self._branches_of(actor)]
            wanted["visible_assignee_id"] = actor.id
        listed = await self.store.list_conversations(ConversationFilter(**wanted))
        return await self._views(listed)

    async def access_conversation(self, actor: User, conversation_id: int) -> StaffView:
        """The conversation if `actor` is its staff; 404 otherwise (whether it exists or not)."""
        view = await self._view(conversation_id)
        if view is None or not self._is_staff(actor, view.inbox, view.listed.state, view.branch):
            raise NotFound("no such conversation", ErrorCode.NOT_FOUND)
        return view

    async def do_update(
        self,
        actor: User,
        view: StaffView,
        *,
        status: str | None = None,
        priority: str | None = None,
        assign: bool = False,
        assignee_id: int | None = None,
    ) -> StaffView:
        """Change status, priority and/or assignee; `assign` with None unassigns."""
        values: dict[str, Any] = {}
        if status is not None:
            values["status"] = parse_status(status).value
        if priority is not None:
            values["priority"] = parse_priority(priority).value
        conversation_id = view.listed.state.conversation_id
        if assign:
            if assignee_id is not None:
                await self._check_assignee(view.inbox, assignee_id)
                if await self.conversations.add_members(conversation_id, [assignee_id]):
                    members = await self.conversations.list_members(conversation_id)
                    await self.publish(
                        ConversationUpdatedEvent(
                            conversation_id=conversation_id,
                            member_ids=[m.user_id for m in members],
                        )
                    )
            values["assignee_id"] = assignee_id
        if values:
            state = view.listed.state
            before = {"status": state.status, "priority": state.priority}
            before["assignee_id"] = state.assignee_id
            await self.store.update_conversation(conversation_id, values)
            await self.audit.record(
                actor,
                "livechat.assign" if set(values) == {"assignee_id"} else "livechat.update",
                Target.of("conversation", conversation_id),
                before={k: before[k] for k in values},
                after=values,
            )
            await self._announce(conversation_id)
        # Not re-checked: someone staff only as the assignee may just have unassigned themselves.
        return await self._view(conversation_id) or view

    async def _check_assignee(self, inbox: Inbox, assignee_id: int) -> None:
        if assignee_id not in {u.id for u in await self._inbox_staff(inbox)}:
            raise InvalidValue(
                f"user {assignee_id} is not staff of inbox {inbox.name!r}", ErrorCode.VALIDATION
            )

    async def list_staff(self, actor: User, inbox_id: int) -> list[StaffMember]:
        inbox = await self.access_inbox(actor, inbox_id)
        staff = await self._inbox_staff(inbox)
        online = await self.online([u.id for u in staff]) if staff else set()
        return [StaffMember(user=u, online=u.id in online) for u in staff]

    async def any_staff_online(self, inbox: Inbox) -> bool:
        """Someone who may answer this inbox's visitors is connected right now."""
        staff = await self._inbox_staff(inbox)
        return bool(staff) and bool(await self.online([u.id for u in staff]))

    async def list_notes(self, view: StaffView) -> list[dict[str, Any]]:
        notes = await self.store.list_notes(view.listed.state.conversation_id)
        authors = {u.id: u for u in await self.users.find_users_by_id([n.author_id for n in notes])}
        return [note_item(n, authors.get(n.author_id)) for n in notes]

    # -- canned replies (staff read them; admins write them) --------------------------------------

    async def list_canned_replies(self, actor: User, inbox_id: int) -> list[CannedReply]:
        inbox = await self.access_inbox(actor, inbox_id)
        return await self.store.list_canned_replies(inbox.id)

    async def do_add_canned_reply(
        self, actor: User, inbox_id: int, shortcut: str, body: str
    ) -> CannedReply:
        self._check_admin(actor)
        inbox = await self.access_inbox(actor, inbox_id)
        if not body.strip():
            raise InvalidValue("a canned reply needs a body")
        reply = await self.store.add_canned_reply(inbox.id, shortcut, body)
        await self.audit.record(
            actor,
            "canned_reply.add",
            Target.of("inbox", inbox.id),
            after={"id": reply.id, "shortcut": shortcut},
        )
        return reply

    async def do_delete_canned_reply(self, actor: User, inbox_id: int, reply_id: int) -> None:
        self._check_admin(actor)
        inbox = await self.access_inbox(actor, inbox_id)
        if not await self.store.delete_canned_reply(inbox.id, reply_id):
            raise NotFound("no such canned reply")
        await self.audit.record(
            actor, "canned_reply.delete", Target.of("inbox", inbox.id), before={"id": reply_id}
        )

    def _check_admin(self, actor: User) -> None:
        if actor.role is not Role.ADMIN:
            raise Forbidden("only admins manage canned replies", ErrorCode.FORBIDDEN)

    async def list_activity(self, view: StaffView) -> list[dict[str, Any]]:
        """Who assigned it, changed its status or priority, and when: kept by the audit log.

        Every change of `do_update` is an audit entry already, so the timeline reads them back
        instead of keeping a second copy; names are resolved now (a renamed operator shows as
        they are called today).
        """
        target = Target.of("conversation", view.listed.state.conversation_id)
        entries = await self.audit.store.list_entries(
            AuditFilter(
                action=ACTIVITY_ACTIONS,
                target_kind=target.kind,
                target_id=target.id,
                limit=ACTIVITY_LIMIT,
            )
        )
        ids = {e.actor_id for e in entries if e.actor_id is not None}
        for entry in entries:
            after = entry.after if isinstance(entry.after, dict) else {}
            if isinstance(after.get("assignee_id"), int):
                ids.add(after["assignee_id"])
        people = await self.users.find_users_by_id(sorted(ids)) if ids else []
        names = {u.id: u.display_name or u.name for u in people}
        return activity_items(entries, names)

    async def do_add_note(self, actor: User, view: StaffView, body: str) -> dict[str, Any]:
        if not body.strip():
            raise InvalidValue("a note needs a body")
        state = view.listed.state
        note = note_item(await self.store.add_note(state.conversation_id, actor.id, body), actor)
        await self.publish(
            LivechatNoteEvent(note=note, staff_ids=await self._staff_ids(view.inbox, state))
        )
        return note

    # -- views and events ------------------------------------------------------------------------

    async def _views(self, listed: list[ListedConversation]) -> list[StaffView]:
        if not listed:
            return []
        inboxes = {i.id: i for i in await self.directory.list_inboxes()}
        branches = {b.id: b for b in await self.directory.list_branches()}
        user_ids = {c.state.visitor_id for c in listed} | {
            c.state.assignee_id for c in listed if c.state.assignee_id is not None
        }
        users = {u.id: u for u in await self.users.find_users_by_id(sorted(user_ids))}
        return [
            StaffView(
                listed=c,
                inbox=inboxes[c.state.inbox_id],
                visitor=users.get(c.state.visitor_id),
                assignee=users.get(c.state.assignee_id) if c.state.assignee_id else None,
                branch=branches.get(c.state.branch_id) if c.state.branch_id else None,
            )
            for c in listed
            if c.state.inbox_id in inboxes
        ]

    async def _view(self, conversation_id: int) -> StaffView | None:
        listed = await self.store.get_conversation(conversation_id)
        views = await self._views([listed]) if listed else []
        return views[0] if views else None

    async def _announce(self, conversation_id: int, *, to_members: bool = True) -> None:
        """A `livechat.conversation` event to the conversation's staff (never its visitor);
        without `to_members`, only to staff who are not members (they miss its messages)."""
        view = await self._view(conversation_id)
        if view is None:
            return
        staff_ids = await self._staff_ids(view.inbox, view.listed.state)
        if not to_members:
            members = await self.conversations.list_members(conversation_id)
            inside = {m.user_id for m in members}
            staff_ids = [uid for uid in staff_ids if uid not in inside]
            if not staff_ids:
                return
        await self.publish(
            LivechatConversationEvent(conversation=conversation_item(view), staff_ids=staff_ids)
        )
