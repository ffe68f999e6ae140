"""Admin REST for accounts: `/v1/admin/users/{name}/...` — role, disable/enable, password.

Admins only (anyone else 403). Each change but enabling revokes every token of the user, and
their streams close on every node; each is written to the audit log (`parley.audit`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path

from parley.api.deps import AdminUser, ServicesDep
from parley.api.schemas import Input, Text, UserOut
from parley.core import limits
from parley.core.models import Role, User

router = APIRouter(prefix="/v1/admin/users", tags=["admin"])

NameParam = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class RoleIn(Input):
    role: Literal["member", "operator", "moderator", "dispute_ops", "admin"]


class PasswordIn(Input):
    password: Text(limits.PASSWORD_MAX_CHARS, min_length=1)  # type: ignore[valid-type]


class AccountOut(UserOut):
    disabled: bool

    @classmethod
    def of_account(cls, user: User) -> AccountOut:
        return cls(**UserOut.of(user).model_dump(), disabled=user.disabled)


@router.put("/{name}/role", response_model=AccountOut)
async def set_role(
    name: NameParam, body: RoleIn, admin: AdminUser, services: ServicesDep
) -> AccountOut:
    """A new deployment-wide role; the user signs in again (tokens revoked, streams closed)."""
    identity = services.identity
    user = await identity.access_user(name)
    return AccountOut.of_account(await identity.do_set_role(user, Role(body.role), actor=admin))


@router.post("/{name}/disable", response_model=AccountOut)
async def disable(name: NameParam, admin: AdminUser, services: ServicesDep) -> AccountOut:
    """No more sign-in; every token revoked and every stream of the user closed."""
    identity = services.identity
    user = await identity.access_user(name)
    return AccountOut.of_account(await identity.do_set_disabled(user, True, actor=admin))


@router.post("/{name}/enable", response_model=AccountOut)
async def enable(name: NameParam, admin: AdminUser, services: ServicesDep) -> AccountOut:
    """Sign-in allowed again (old tokens stay revoked)."""
    identity = services.identity
    user = await identity.access_user(name)
    return AccountOut.of_account(await identity.do_set_disabled(user, False, actor=admin))


@router.put("/{name}/password", status_code=204)
async def set_password(
    name: NameParam, body: PasswordIn, admin: AdminUser, services: ServicesDep
) -> None:
    """A new password (8+ characters); every token of the user revoked, streams closed."""
    identity = services.identity
    user = await identity.access_user(name)
    await identity.do_set_password(user, body.password, actor=admin)
