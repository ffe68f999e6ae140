"""Branches as admins manage them: teams of operators that conversations are routed to."""

from __future__ import annotations

from typing import Any

from parley.core.audit import Target
from parley.core.errors import ErrorCode, Forbidden, InvalidValue, NotFound
from parley.core.livechat import Branch
from parley.core.models import Role, User
from parley.services.audit import AuditLog
from parley.storage.livechat import LivechatStore
from parley.storage.users import UserStore


class Branches:
    """Branches as admins manage them."""

    def __init__(self, store: LivechatStore, users: UserStore, audit: AuditLog) -> None:
        self.store = store
        self.users = users
        self.audit = audit

    def access_admin(self, actor: User) -> None:
        if actor.role is not Role.ADMIN:
            raise Forbidden("only admins manage branches", ErrorCode.FORBIDDEN)

    async def check_operators(self, names: list[str]) -> list[str]:
        unique = list(dict.fromkeys(names))
        users = await self.users.find_users_by_name(unique) if unique else []
        found = {u.name for u in users if not u.visitor}  # a visitor is never staff
        missing = sorted(set(unique) - found)
        if missing:
            raise InvalidValue(f"unknown users: {', '.join(missing)}", ErrorCode.VALIDATION)
        return unique

    async def do_create(self, actor: User | str, name: str, operators: list[str]) -> Branch:
        branch = await self.store.create_branch(name, await self.check_operators(operators))
        await self.audit.record(
            actor, "branch.create", Target.of("branch", branch.id), after=branch
        )
        return branch

    async def list_branches(self) -> list[Branch]:
        return await self.store.list_branches()

    async def access_branch(self, actor: User, branch_id: int) -> Branch:
        self.access_admin(actor)
        branch = await self.store.get_branch(branch_id)
        if branch is None:
            raise NotFound("no such branch")
        return branch

    async def do_update(
        self, actor: User | str, branch: Branch, *, name: str | None, operators: list[str] | None
    ) -> Branch:
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = name
        if operators is not None:
            values["operators"] = await self.check_operators(operators)
        if not values:
            return branch
        updated = await self.store.update_branch(branch.id, values)
        if updated is None:
            raise NotFound("no such branch")
        await self.audit.record(
            actor,
            "branch.update",
            Target.of("branch", branch.id),
            before={k: getattr(branch, k) for k in values},
            after={k: getattr(updated, k) for k in values},
        )
        return updated

    async def check_branch_ids(self, branch_ids: list[int]) -> None:
        known = {b.id for b in await self.store.list_branches()}
        missing = sorted(set(branch_ids) - known)
        if missing:
            raise InvalidValue(
                f"no branch with id {', '.join(map(str, missing))}", ErrorCode.UNKNOWN_BRANCH
            )
