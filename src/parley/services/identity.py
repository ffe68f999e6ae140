"""Users, passwords and bearer tokens: who is calling."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from parley.core.errors import BadInput, ErrorCode, Unauthenticated
from parley.core.models import Role, User
from parley.storage.users import TokenStore, UserStore

TOKEN_PREFIX = "pk_"  # noqa: S105 - a prefix, not a secret
_hasher = PasswordHasher()
# Verifying against this when a name is unknown keeps login time the same either way.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so a fast hash is enough; the database never sees one."""
    return hashlib.sha256(token.encode()).hexdigest()


class Identity:
    def __init__(self, users: UserStore, tokens: TokenStore) -> None:
        self.users = users
        self.tokens = tokens

    async def do_create_user(
        self,
        name: str,
        *,
        role: Role = Role.MEMBER,
        internal: bool = False,
        password: str | None = None,
        display_name: str | None = None,
        email: str | None = None,
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

    async def do_set_password(self, user: User, password: str) -> None:
        await self.users.set_password_hash(user.id, _hasher.hash(password))

    async def access_token(self, token: str) -> User:
        """The user a bearer token stands for; 401 if unknown, revoked or expired."""
        found = await self.tokens.find_token_user(hash_token(token))
        if found is None:
            raise Unauthenticated("the token is not valid", ErrorCode.INVALID_CREDENTIALS)
        user, expires_at = found
        if expires_at is not None and _aware(expires_at) <= datetime.now(UTC):
            raise Unauthenticated("the token has expired", ErrorCode.INVALID_CREDENTIALS)
        return user

    async def do_login(self, name: str, password: str) -> tuple[User, str]:
        found = await self.users.get_credentials(name)
        stored_hash = found[1] if found and found[1] else _DUMMY_HASH
        try:
            _hasher.verify(stored_hash, password)
            ok = found is not None and found[1] is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or found is None:
            raise Unauthenticated("wrong name or password", ErrorCode.INVALID_CREDENTIALS)
        user = found[0]
        return user, await self.do_issue_token(user, label="login")

    async def do_logout(self, token: str) -> None:
        await self.tokens.revoke_token(hash_token(token))


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


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
