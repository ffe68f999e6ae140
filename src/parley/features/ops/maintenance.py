"""Maintenance mode: one switch for every node, kept as a runtime setting in the database.

While it is on, the API answers 503 `ERR_MAINTENANCE` with `Retry-After` and the operators'
message (api/middleware.py `MaintenanceGate`), streams of non-staff users are told and closed,
and new ones refused — so nothing is written while a backup is taken or a release goes in
(seed 003, step 1). Health, readiness and metrics keep answering; staff (every role but
`member`) still sign in and work, so they can check the release before opening the doors.

Each node re-reads the switch every PARLEY_MAINTENANCE_POLL_SECONDS, so `parley maintenance on`
from any host, or `PUT /v1/admin/maintenance` on any node, reaches all of them within that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from parley import metrics
from parley.core.audit import Target
from parley.core.errors import BadInput, Forbidden, Unavailable, UnderMaintenance
from parley.core.events import ControlEvent
from parley.core.models import Role, User
from parley.services.audit import AuditLog
from parley.services.stream import StreamService
from parley.settings import Settings
from parley.storage.stream import StreamStore
from parley.storage.users import UserStore

log = logging.getLogger(__name__)

MAINTENANCE_KEY = "maintenance"
DEFAULT_MESSAGE = "We are down for maintenance and will be back shortly."
MESSAGE_MAX = 500


@dataclass(frozen=True, slots=True)
class MaintenanceState:
    active: bool = False
    message: str = ""
    retry_after: int = 300
    since: datetime | None = None
    actor: str = ""

    def public_json(self) -> dict[str, Any]:
        """What anyone may read (GET /v1/maintenance): no actor."""
        return {
            "active": self.active,
            "message": self.message,
            "retry_after": self.retry_after,
            "since": self.since.isoformat().replace("+00:00", "Z") if self.since else None,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.public_json(), "actor": self.actor}

    @classmethod
    def of(cls, stored: Any) -> MaintenanceState:
        if not isinstance(stored, dict):
            return cls()
        since = stored.get("since")
        return cls(
            active=bool(stored.get("active")),
            message=str(stored.get("message") or ""),
            retry_after=int(stored.get("retry_after") or 300),
            since=datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None,
            actor=str(stored.get("actor") or ""),
        )


def is_staff(user: User) -> bool:
    """Operators, moderators, dispute officers and admins keep working during maintenance."""
    return user.role is not Role.MEMBER


def _check_admin(user: User) -> None:
    if user.role is not Role.ADMIN:
        raise Forbidden("only admins read and switch maintenance mode")


class Maintenance:
    """This node's view of the switch, refreshed from the database, and the actions on it."""

    def __init__(
        self,
        settings: Settings,
        store: StreamStore,
        users: UserStore,
        audit: AuditLog,
        stream: StreamService | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.users = users
        self.audit = audit
        self.stream = stream  # set when this process serves streams
        self.state = MaintenanceState()
        self._task: asyncio.Task[None] | None = None

    # -- the switch as this node sees it -----------------------------------------------------

    async def read(self) -> MaintenanceState:
        return MaintenanceState.of(await self.store.get_runtime_setting(MAINTENANCE_KEY))

    async def refresh(self) -> None:
        """Re-read the switch; on a change, tell this node's streams (and close non-staff ones)."""
        new = await self.read()
        old, self.state = self.state, new
        metrics.MAINTENANCE_ACTIVE.set(1 if new.active else 0)
        if (old.active, old.message) != (new.active, new.message):
            log.info("maintenance mode %s", "on" if new.active else "off")
            await self._tell_streams(new)

    async def _tell_streams(self, state: MaintenanceState) -> None:
        stream = self.stream
        if stream is None or stream.hub is None:
            return
        stream.tell_local(
            ControlEvent(
                op="maintenance", mode="on" if state.active else "off", reason=state.message
            )
        )
        if state.active:
            users = await self.users.find_users_by_id(sorted(stream.local_user_ids()))
            outsiders = {user.id for user in users if not is_staff(user)}
            stream.tell_local(ControlEvent(op="reconnect", reason="maintenance"), outsiders)

    async def start(self) -> None:
        with contextlib.suppress(Unavailable):
            await self.refresh()
        self._task = asyncio.create_task(self._poll(), name="maintenance-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.maintenance_poll_seconds)
            try:
                await self.refresh()
            except Exception as exc:  # the database may be restarting: keep the last state
                log.warning("reading the maintenance switch failed: %s", exc)

    # -- who may pass --------------------------------------------------------------------------

    def admits(self, user: User | None) -> bool:
        return not self.state.active or (user is not None and is_staff(user))

    def refusal(self) -> UnderMaintenance:
        state = self.state
        metrics.MAINTENANCE_REFUSED.inc()
        return UnderMaintenance(state.message or DEFAULT_MESSAGE, retry_after=state.retry_after)

    def check_admits(self, user: User) -> None:
        """Raise 503 ERR_MAINTENANCE for a user maintenance keeps out (streams, sign-in)."""
        if not self.admits(user):
            raise self.refusal()

    # -- switching -----------------------------------------------------------------------------

    async def access_state(self, user: User) -> MaintenanceState:
        """The stored switch with its actor (admins)."""
        _check_admin(user)
        return await self.read()

    def check_switch(self, message: str, retry_after: int | None) -> tuple[str, int]:
        message = message.strip()
        if len(message) > MESSAGE_MAX:
            raise BadInput(f"the maintenance message is at most {MESSAGE_MAX} characters")
        retry = (
            self.settings.maintenance_retry_after_seconds if retry_after is None else retry_after
        )
        if not 1 <= retry <= 86_400:
            raise BadInput("retry_after is 1-86400 seconds")
        return message or DEFAULT_MESSAGE, retry

    async def do_switch(
        self,
        actor: User | str,
        *,
        active: bool,
        message: str = "",
        retry_after: int | None = None,
        reason: str = "",
    ) -> MaintenanceState:
        """Turn maintenance on or off for every node (admins, or the CLI); audited."""
        if isinstance(actor, User):
            _check_admin(actor)
        message, retry = self.check_switch(message, retry_after)
        before = await self.read()
        who = actor.name if isinstance(actor, User) else actor
        state = (
            MaintenanceState(True, message, retry, before.since or datetime.now(UTC), who)
            if active
            else MaintenanceState(False, "", retry, None, who)
        )
        await self.store.set_runtime_setting(
            MAINTENANCE_KEY, state.to_json(), actor.id if isinstance(actor, User) else None
        )
        await self.audit.record(
            actor,
            "maintenance.on" if active else "maintenance.off",
            Target.of("maintenance", "deployment"),
            before=before.to_json() if before.active else {"active": False},
            after=state.to_json() if active else {"active": False},
            reason=reason,
        )
        if self.stream is not None:  # serving: this node knows at once, the rest within a poll
            await self.refresh()
        return state
