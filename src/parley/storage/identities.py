"""IdentityStore: which Parley user an OpenID provider's subject signs in as."""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from parley.core.models import User
from parley.storage.database import Database
from parley.storage.rows import now, user_from_row
from parley.storage.schema import user_identities, users


class IdentityStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def find_identity_user(self, provider: str, subject: str) -> User | None:
        query = (
            select(users)
            .join(user_identities, user_identities.c.user_id == users.c.id)
            .where(user_identities.c.provider == provider, user_identities.c.subject == subject)
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return user_from_row(row) if row else None

    async def link_identity(
        self, provider: str, subject: str, user_id: int, email: str | None
    ) -> None:
        """Remember that (provider, subject) is `user_id`; a link made meanwhile is kept."""
        at = now()
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    insert(user_identities).values(
                        provider=provider,
                        subject=subject,
                        user_id=user_id,
                        email=email,
                        created_at=at,
                        last_login_at=at,
                    )
                )
        except IntegrityError:
            return

    async def touch_identity(self, provider: str, subject: str, email: str | None) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(user_identities)
                .where(user_identities.c.provider == provider, user_identities.c.subject == subject)
                .values(email=email, last_login_at=now())
            )

    async def list_identities(self, user_id: int) -> list[tuple[str, str]]:
        query = select(user_identities.c.provider, user_identities.c.subject).where(
            user_identities.c.user_id == user_id
        )
        async with self.db.read() as conn:
            return [(row.provider, row.subject) for row in await conn.execute(query)]
