"""UserStore and TokenStore: identities and the hashed bearer tokens that stand for them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from parley.core.errors import Conflict, ErrorCode
from parley.core.models import Role, User
from parley.storage.database import Database
from parley.storage.rows import now, user_from_row
from parley.storage.schema import api_tokens, users


class UserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_user(
        self,
        *,
        name: str,
        display_name: str,
        role: Role,
        internal: bool,
        password_hash: str | None,
        email: str | None = None,
        visitor: bool = False,
    ) -> User:
        try:
            async with self.db.write() as conn:
                result = await conn.execute(
                    insert(users)
                    .values(
                        name=name,
                        display_name=display_name,
                        role=role.value,
                        internal=internal,
                        password_hash=password_hash,
                        created_at=now(),
                        email=email.lower() if email else None,
                        visitor=visitor,
                    )
                    .returning(*users.c)
                )
                return user_from_row(result.one())
        except IntegrityError as exc:
            if "email" in str(exc.orig):
                raise Conflict(
                    f"another user has the e-mail {email!r}", ErrorCode.NAME_TAKEN
                ) from None
            raise Conflict(f"the user name {name!r} is taken", ErrorCode.NAME_TAKEN) from None

    async def create_users(self, names: list[str], *, role: Role) -> list[User]:
        """Create many users in one transaction (load tests); any taken name fails them all."""
        created = now()
        rows = [
            {
                "name": name,
                "display_name": name,
                "role": role.value,
                "internal": False,
                "password_hash": None,
                "created_at": created,
            }
            for name in names
        ]
        try:
            async with self.db.write() as conn:
                # Unordered RETURNING is one statement on SQLite too (ordered is one per row).
                result = await conn.execute(insert(users).returning(*users.c), rows)
                by_name = {row.name: user_from_row(row) for row in result}
                return [by_name[name] for name in names]
        except IntegrityError:
            raise Conflict("one of those user names is taken", ErrorCode.NAME_TAKEN) from None

    async def get_user(self, user_id: int) -> User | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
        return user_from_row(row) if row else None

    async def find_users_by_name(self, names: list[str]) -> list[User]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(users).where(users.c.name.in_(names)))
            return [user_from_row(row) for row in rows]

    async def find_users_by_id(self, ids: list[int]) -> list[User]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(users).where(users.c.id.in_(ids)))
            return [user_from_row(row) for row in rows]

    async def find_user_by_email(self, email: str) -> User | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(users).where(users.c.email == email.lower()))).first()
        return user_from_row(row) if row else None

    async def set_role(self, user_id: int, role: Role) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(users).where(users.c.id == user_id).values(role=role.value))

    async def get_credentials(self, name: str) -> tuple[User, str | None] | None:
        """The user named `name` with their password hash, for login."""
        async with self.db.read() as conn:
            row = (await conn.execute(select(users).where(users.c.name == name))).first()
        return (user_from_row(row), row.password_hash) if row else None

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(users).where(users.c.id == user_id).values(password_hash=password_hash)
            )

    async def update_user(self, user_id: int, values: dict[str, object]) -> User | None:
        """Change `role`, `disabled` or `password_hash`; the user as now stored (None: gone)."""
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    update(users).where(users.c.id == user_id).values(**values).returning(*users.c)
                )
            ).first()
        return user_from_row(row) if row else None

    async def list_users(self) -> list[User]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(users).order_by(users.c.id))
            return [user_from_row(row) for row in rows]

    async def list_user_ids_with_roles(self, roles: list[Role]) -> list[int]:
        """Who holds any of `roles` (e.g. the moderators and admins a queue change goes to)."""
        async with self.db.read() as conn:
            query = select(users.c.id).where(users.c.role.in_([r.value for r in roles]))
            return [int(uid) for uid in (await conn.execute(query)).scalars()]


class TokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_token(
        self, *, user_id: int, token_hash: str, label: str, expires_at: datetime | None
    ) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                insert(api_tokens).values(
                    user_id=user_id,
                    token_hash=token_hash,
                    label=label,
                    created_at=now(),
                    expires_at=expires_at,
                )
            )

    async def add_tokens(self, tokens: list[tuple[int, str]], *, label: str) -> None:
        """Store many `(user_id, token_hash)` pairs in one transaction."""
        created = now()
        async with self.db.write() as conn:
            await conn.execute(
                insert(api_tokens),
                [
                    {
                        "user_id": user_id,
                        "token_hash": token_hash,
                        "label": label,
                        "created_at": created,
                        "expires_at": None,
                    }
                    for user_id, token_hash in tokens
                ],
            )

    async def find_token_users(
        self, token_hashes: list[str]
    ) -> dict[str, tuple[User, int, datetime | None]]:
        """For each live (not revoked) token of an enabled user among `token_hashes`: its user,
        its id and when it expires. Unknown, revoked and disabled ones are left out."""
        query = (
            select(
                users,
                api_tokens.c.token_hash.label("token_hash"),
                api_tokens.c.id.label("token_id"),
                api_tokens.c.expires_at.label("token_expires_at"),
            )
            .join(api_tokens, api_tokens.c.user_id == users.c.id)
            .where(
                api_tokens.c.token_hash.in_(token_hashes),
                api_tokens.c.revoked_at.is_(None),
                users.c.disabled.is_(False),
            )
        )
        async with self.db.read_single() as conn:
            rows = (await conn.execute(query)).all()
        return {
            row.token_hash: (user_from_row(row), int(row.token_id), row.token_expires_at)
            for row in rows
        }

    async def find_token_label(self, token_hash: str) -> str | None:
        """What a live token was issued for (`login`, `cli`, `sso:<provider>`...)."""
        query = select(api_tokens.c.label).where(
            api_tokens.c.token_hash == token_hash, api_tokens.c.revoked_at.is_(None)
        )
        async with self.db.read() as conn:
            label: str | None = (await conn.execute(query)).scalar_one_or_none()
        return label

    async def revoke_token(self, token_hash: str) -> tuple[int, int] | None:
        """Revoke one live token: its (id, user id), or None when it was not live."""
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    update(api_tokens)
                    .where(api_tokens.c.token_hash == token_hash, api_tokens.c.revoked_at.is_(None))
                    .values(revoked_at=now())
                    .returning(api_tokens.c.id, api_tokens.c.user_id)
                )
            ).first()
        return (int(row.id), int(row.user_id)) if row else None

    async def revoke_user_tokens(self, user_id: int) -> list[int]:
        """Revoke every live token of a user; their ids."""
        async with self.db.write() as conn:
            rows = await conn.execute(
                update(api_tokens)
                .where(api_tokens.c.user_id == user_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=now())
                .returning(api_tokens.c.id)
            )
            return [int(row.id) for row in rows]

    async def list_revoked_since(self, since: datetime) -> list[tuple[int, int]]:
        """(token id, user id) of the tokens revoked at or after `since`."""
        t = api_tokens.c
        query = select(t.id, t.user_id).where(t.revoked_at >= since)
        async with self.db.read() as conn:
            return [(int(row.id), int(row.user_id)) for row in await conn.execute(query)]
