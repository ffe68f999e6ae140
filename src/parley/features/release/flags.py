"""FlagService: evaluate flags for a caller, change their rules, and tell clients.

`transport_sse_only` is the transport switch itself: its value is the stream's
`runtime_settings["transport_mode"]`, so `PUT /v1/admin/transport`, `PUT
/v1/admin/flags/transport_sse_only` and a kill with `PARLEY_RELEASE_KILL_SSE_ONLY` all move the
same switch.

Changes made by a serving node are announced at once (`flags.updated` through the stream, and a
`control` event for the transport). Changes made elsewhere (the CLI) only bump the revision;
the first node's watcher to claim it announces it.
"""

from __future__ import annotations

import logging
from typing import Any

from parley.core.audit import Target
from parley.core.errors import BadInput, Conflict, ErrorCode, Forbidden, NotFound
from parley.core.events import ControlEvent, FlagsUpdatedEvent
from parley.core.flags import (
    RELEASE_FLAG,
    TRANSPORT_FLAG,
    Evaluation,
    Flag,
    FlagContext,
    Stickiness,
    evaluate_all,
)
from parley.core.models import Role, User
from parley.services.audit import AuditLog
from parley.services.stream import TRANSPORT_MODE_KEY, StreamService, TransportMode
from parley.storage.flags import FlagStore
from parley.storage.users import UserStore

log = logging.getLogger(__name__)

EDITABLE = frozenset(
    {
        "description",
        "enabled",
        "internal_only",
        "percentage",
        "stickiness",
        "group",
        "allow_users",
        "allow_keys",
        "roles",
    }
)


def check_admin(user: User) -> None:
    if user.role is not Role.ADMIN:
        raise Forbidden("only admins manage flags and releases")


class FlagService:
    def __init__(
        self, store: FlagStore, users: UserStore, stream: StreamService, audit: AuditLog
    ) -> None:
        self.store = store
        self.users = users
        self.stream = stream
        self.audit = audit

    @property
    def live(self) -> bool:
        """Serving (the stream runs here), so changes can be announced right away."""
        return self.stream.hub is not None

    # -- reading -----------------------------------------------------------------------------

    async def list_flags(self) -> list[Flag]:
        """Every flag, `transport_sse_only` showing the transport switch's position."""
        found = await self.store.list_flags()
        mode = await self.stream.store.get_runtime_setting(TRANSPORT_MODE_KEY)
        return [
            flag.with_changes(enabled=mode == "sse_only") if flag.key == TRANSPORT_FLAG else flag
            for flag in found
        ]

    async def access_subject(self, actor: User, as_user: int | None) -> User:
        """Whose flags to evaluate: the caller's own, or (admins) any user's."""
        if as_user is None or as_user == actor.id:
            return actor
        check_admin(actor)
        subject = await self.users.get_user(as_user)
        if subject is None:
            raise NotFound(f"no user {as_user}")
        return subject

    async def evaluate_for(self, user: User, keys: dict[str, str]) -> dict[str, Evaluation]:
        context = FlagContext(
            user_id=user.id, role=user.role.value, internal=user.internal, keys=keys
        )
        return evaluate_all(await self.list_flags(), context)

    # -- changing ----------------------------------------------------------------------------

    def check_changes(self, key: str, changes: dict[str, Any]) -> dict[str, Any]:
        unknown = set(changes) - EDITABLE
        if unknown:
            raise BadInput(f"cannot change {', '.join(sorted(unknown))} of a flag")
        if key == RELEASE_FLAG and {"enabled", "percentage"} & set(changes):
            raise Conflict(
                f"{RELEASE_FLAG} is switched and sized by the rollout stage; use "
                "`parley release promote | hold | kill` or /v1/admin/release",
                ErrorCode.CONFLICT,
            )
        if key == TRANSPORT_FLAG and set(changes) - {"enabled"}:
            raise BadInput(f"{TRANSPORT_FLAG} is a switch: only `enabled` can change")
        percentage = changes.get("percentage")
        if percentage is not None and not 0 <= percentage <= 100:
            raise BadInput("percentage is 0-100 (or null: no percentage rule)")
        if "stickiness" in changes:
            changes = {**changes, "stickiness": Stickiness(changes["stickiness"])}
        roles = changes.get("roles")
        if roles is not None and not set(roles) <= {role.value for role in Role}:
            raise BadInput(f"roles are among {', '.join(role.value for role in Role)}")
        return changes

    async def do_update_flag(self, actor: User | str, key: str, changes: dict[str, Any]) -> Flag:
        """Change a flag's rules and announce it. `actor` names who, for the record."""
        changes = self.check_changes(key, changes)
        name = actor.name if isinstance(actor, User) else actor
        if key == TRANSPORT_FLAG:
            mode: TransportMode = "sse_only" if changes["enabled"] else "auto"
            await self.set_transport(actor, mode)
            return next(f for f in await self.list_flags() if f.key == TRANSPORT_FLAG)
        before = next((f for f in await self.store.list_flags() if f.key == key), None)
        flag = await self.store.update_flag(key, changes, updated_by=name, announced=self.live)
        if flag is None or before is None:
            raise NotFound(f"no flag {key!r}")
        await self.audit.record(
            actor,
            "flag.update",
            Target.of("flag", key),
            before={name: getattr(before, name) for name in changes},
            after={name: getattr(flag, name) for name in changes},
        )
        revision, _ = await self.store.get_revision()
        await self.announce(revision, [key])
        return flag

    async def do_set_transport_mode(self, actor: User, mode: TransportMode) -> None:
        """`PUT /v1/admin/transport`: the same switch as the `transport_sse_only` flag."""
        check_admin(actor)
        await self.set_transport(actor, mode)

    async def set_transport(self, actor: User | str, mode: TransportMode) -> None:
        user_id = actor.id if isinstance(actor, User) else None
        before = await self.stream.store.get_runtime_setting(TRANSPORT_MODE_KEY) or "auto"
        await self.stream.store.set_runtime_setting(TRANSPORT_MODE_KEY, mode, user_id)
        revision = await self.store.touch_revision(announced=self.live)
        log.info("transport mode set to %s by %s", mode, getattr(actor, "name", actor))
        await self.audit.record(
            actor, "transport.set", Target.of("transport", "mode"), before=before, after=mode
        )
        if self.live:
            await self.stream.publish(ControlEvent(op="transport", mode=mode))
        await self.announce(revision, [TRANSPORT_FLAG])

    async def announce(self, revision: int, keys: list[str]) -> None:
        """Tell every connected client (all nodes) that flags changed; no-op off-server."""
        if self.live:
            await self.stream.publish(FlagsUpdatedEvent(revision=revision, keys=keys))

    async def announce_pending(self) -> bool:
        """A change made elsewhere (the CLI): the first node to claim it announces it."""
        revision, published = await self.store.get_revision()
        if revision <= published or not await self.store.claim_revision(revision):
            return False
        mode = await self.stream.store.get_runtime_setting(TRANSPORT_MODE_KEY) or "auto"
        if mode != self.stream.mode:
            await self.stream.publish(ControlEvent(op="transport", mode=mode))
        await self.announce(revision, [])
        return True
