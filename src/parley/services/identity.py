"""Users, passwords and bearer tokens: who is calling, and taking that back.

Revoking a token (sign-out) or every token of a user (password, role or disabled changed)
publishes a `credentials.revoked` event: every node closes the streams opened with them.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from parley.core.audit import Target
from parley.core.coalesce import CoalescedLookup
from parley.core.errors import BadInput, ErrorCode, Forbidden, NotFound, Unauthenticated
from parley.core.events import CredentialsRevokedEvent, Event
from parley.core.limits import PASSWORD_MAX_CHARS
from parley.core.models import Role, User
from parley.metrics import LOGIN_REFUSED
from parley.services.audit import AuditLog
from parley.services.ratelimits import RateLimits
from parley.storage.users import TokenStore, UserStore

TOKEN_PREFIX = "pk_"  # noqa: S105 - a prefix, not a secret
PASSWORD_MIN_CHARS = 8
_hasher = PasswordHasher()
# Verifying against this when a name is unknown keeps login time the same either way.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))

Publish = Callable[[Event], Awaitable[None]]


async def _publish_nowhere(_event: Event) -> None:
    return None


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so a fast hash is enough; the database never sees one."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Credential:
    """A caller as a bearer token proves them: the user and which token (a device) it was."""

    user: User
    token_id: int
    expires_at: datetime | None = None


class Identity:
    def __init__(
        self,
        users: UserStore,
        tokens: TokenStore,
        *,
        login_limits: RateLimits | None = None,
        publish: Publish = _publish_nowhere,
        audit: AuditLog | None = None,
    ) -> None:
        self.users = users
        self.tokens = tokens
        # Staff actions on accounts (role, disable, password) land in the audit log.
        self.audit = audit
        self.login_limits = login_limits or RateLimits("login", {})
        # Set by the container to the stream service's publish (events go out after commit).
        self.publish = publish
        # Every API request looks its token up: those arriving together share one query. A
        # look-up that starts after a revoke committed always runs a query that sees it.
        self._tokens = CoalescedLookup(tokens.find_token_users)

    async def do_create_user(
        self,
        name: str,
        *,
        role: Role = Role.MEMBER,
        internal: bool = False,
        password: str | None = None,
        display_name: str | None = None,
        email: str | None = None,
        visitor: bool = False,
    ) -> User:
        check_user_name(name)
        if email is not None and not _EMAIL.fullmatch(email):
            raise BadInput("that is not an e-mail address", ErrorCode.VALIDATION)
        return await self.users.create_user(
            name=name,
            display_name=display_name or name,
            role=role,
            internal=internal,
            password_hash=_hasher.hash(password) if password else None,
            email=email,
            visitor=visitor,
        )

    async def do_issue_token(
        self, user: User, *, label: str = "cli", expires_at: datetime | None = None
    ) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        await self.tokens.add_token(
            user_id=user.id, token_hash=hash_token(token), label=label, expires_at=expires_at
        )
        return token

    async def do_create_users(
        self, names: list[str], *, role: Role = Role.MEMBER, label: str = "cli"
    ) -> list[tuple[User, str]]:
        """Create many users, each with a token, in two transactions (load-test fixtures)."""
        for name in names:
            check_user_name(name)
        created = await self.users.create_users(names, role=role)
        issued = [(user, TOKEN_PREFIX + secrets.token_urlsafe(32)) for user in created]
        await self.tokens.add_tokens(
            [(user.id, hash_token(token)) for user, token in issued], label=label
        )
        return issued

    async def access_credential(self, token: str) -> Credential:
        """The user and token id a bearer token stands for; 401 if unknown, revoked, expired,
        or its user is disabled."""
        found = await self._tokens.get(hash_token(token))
        if found is None:
            raise Unauthenticated("the token is not valid", ErrorCode.INVALID_CREDENTIALS)
        user, token_id, expires_at = found
        expires_at = _aware(expires_at) if expires_at is not None else None
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise Unauthenticated("the token has expired", ErrorCode.INVALID_CREDENTIALS)
        return Credential(user=user, token_id=token_id, expires_at=expires_at)

    async def access_token(self, token: str) -> User:
        """The user a bearer token stands for; 401 if unknown, revoked or expired."""
        return (await self.access_credential(token)).user

    async def do_login(self, name: str, password: str, *, client_ip: str = "") -> tuple[User, str]:
        """A new token for the right name and password.

        Every attempt counts against the account's and the address's rate, before the password
        is checked: past either, even the right password gets 429 until the window moves on.
        """
        await self._check_login_rate("account", name)
        await self._check_login_rate("ip", client_ip)
        found = await self.users.get_credentials(name)
        stored_hash = found[1] if found and found[1] else _DUMMY_HASH
        # Argon2 takes a CPU for a good part of a second on purpose: off the event loop, so a
        # burst of sign-ins does not stall every stream of this node.
        ok = await asyncio.to_thread(_verify, stored_hash, password)
        ok = ok and found is not None and found[1] is not None
        if not ok or found is None:
            LOGIN_REFUSED.labels("credentials").inc()
            raise Unauthenticated("wrong name or password", ErrorCode.INVALID_CREDENTIALS)
        user = found[0]
        if user.disabled:
            LOGIN_REFUSED.labels("disabled").inc()
            raise Forbidden("this account is disabled; ask an admin", ErrorCode.ACCOUNT_DISABLED)
        return user, await self.do_issue_token(user, label="login")

    async def _check_login_rate(self, kind: str, key: str) -> None:
        if await self.login_limits.within(kind, key):
            return
        LOGIN_REFUSED.labels(f"rate_{kind}").inc()
        who = "this account" if kind == "account" else "this address"
        raise await self.login_limits.refusal(
            kind, key, f"too many sign-in attempts for {who}; wait and try again"
        )

    async def do_logout(self, token: str) -> None:
        """Revoke this token; the streams opened with it close on every node."""
        revoked = await self.tokens.revoke_token(hash_token(token))
        if revoked is not None:
            token_id, user_id = revoked
            await self.publish(
                CredentialsRevokedEvent(user_id=user_id, token_ids=[token_id], reason="signed out")
            )

    # -- staff actions on accounts (admins; the CLI) ---------------------------------------------

    async def access_user(self, name: str) -> User:
        found = await self.users.find_users_by_name([name])
        if not found:
            raise NotFound(f"no user named {name!r}")
        return found[0]

    async def do_set_password(
        self, user: User, password: str, *, actor: User | str, reason: str = ""
    ) -> None:
        """A new password; every token of the user is revoked (sign in again everywhere)."""
        check_password(password)
        await self.users.set_password_hash(user.id, await asyncio.to_thread(_hasher.hash, password))
        revoked = await self._revoke_all(user, "password changed")
        await self._audit(
            actor, "user.password", user, after={"tokens_revoked": revoked}, reason=reason
        )

    async def do_set_role(
        self, user: User, role: Role, *, actor: User | str, reason: str = ""
    ) -> User:
        """A new deployment-wide role; the user's tokens and streams end (they sign in again)."""
        updated = await self._update(user, {"role": role.value})
        revoked = await self._revoke_all(user, f"role changed from {user.role} to {role}")
        await self._audit(
            actor,
            "user.role",
            user,
            before={"role": user.role},
            after={"role": role, "tokens_revoked": revoked},
            reason=reason,
        )
        return updated

    async def do_set_disabled(
        self, user: User, disabled: bool, *, actor: User | str, reason: str = ""
    ) -> User:
        """Disable (no sign-in, every token revoked, streams closed) or enable again."""
        updated = await self._update(user, {"disabled": disabled})
        revoked = await self._revoke_all(user, "account disabled") if disabled else 0
        after = {"disabled": disabled, "tokens_revoked": revoked}
        action = "user.disable" if disabled else "user.enable"
        await self._audit(
            actor, action, user, before={"disabled": user.disabled}, after=after, reason=reason
        )
        return updated

    async def _update(self, user: User, values: dict[str, object]) -> User:
        updated = await self.users.update_user(user.id, values)
        if updated is None:
            raise NotFound(f"no user named {user.name!r}")
        return updated

    async def _revoke_all(self, user: User, reason: str) -> int:
        token_ids = await self.tokens.revoke_user_tokens(user.id)
        await self.publish(
            CredentialsRevokedEvent(
                user_id=user.id, token_ids=token_ids, all_streams=True, reason=reason
            )
        )
        return len(token_ids)

    async def _audit(self, actor: User | str, action: str, user: User, **entry: Any) -> None:
        if self.audit is not None:
            await self.audit.record(actor, action, Target.of("user", user.id), **entry)


# The same shape the REST schemas accept, so every user the CLI makes can be named over the API.
_USER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Enough to refuse typos; whether the address is real is the provider's to verify (SSO linking
# only trusts an e-mail the provider says it verified).
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")


def check_user_name(name: str) -> None:
    if not _USER_NAME.fullmatch(name):
        raise BadInput(
            "a user name is 1-64 ASCII letters, digits, '.', '_' or '-'", ErrorCode.VALIDATION
        )


def check_password(password: str) -> None:
    if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        raise BadInput(
            f"a password is {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters",
            ErrorCode.VALIDATION,
        )


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(stored_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
