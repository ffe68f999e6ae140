"""WidgetIdentityStore: verified visitors (one user per inbox and site user id) and used nonces."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from parley.core.models import Role, User
from parley.storage.database import Database
from parley.storage.rows import now, user_from_row
from parley.storage.schema import users, widget_identities, widget_identity_nonces


class WidgetIdentityStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def use_nonce(self, inbox_id: int, nonce: str, expires_at: datetime) -> bool:
        """Record a token's nonce; False if it was seen before (a replay).

        Nonces of expired tokens are dropped first: their tokens are refused as expired anyway.
        """
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    delete(widget_identity_nonces).where(
                        widget_identity_nonces.c.inbox_id == inbox_id,
                        widget_identity_nonces.c.expires_at < now(),
                    )
                )
                await conn.execute(
                    insert(widget_identity_nonces).values(
                        inbox_id=inbox_id, nonce=nonce, expires_at=expires_at
                    )
                )
        except IntegrityError:
            return False
        return True

    async def find_visitor(self, inbox_id: int, external_id: str) -> User | None:
        query = (
            select(users)
            .join(widget_identities, widget_identities.c.visitor_id == users.c.id)
            .where(
                widget_identities.c.inbox_id == inbox_id,
                widget_identities.c.external_id == external_id,
            )
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return user_from_row(row) if row else None

    async def claim_visitor(
        self, inbox_id: int, external_id: str, *, name: str, display_name: str
    ) -> User:
        """The visitor user of this site user, created with its identity row in one transaction.

        Two bootstraps racing (even on two nodes) both try; the loser's transaction — its user
        included — rolls back on the primary key, and it reads the winner's user instead.
        """
        stamp = now()
        try:
            async with self.db.write() as conn:
                row = (
                    await conn.execute(
                        insert(users)
                        .values(
                            name=name,
                            display_name=display_name,
                            role=Role.MEMBER.value,
                            internal=False,
                            password_hash=None,
                            created_at=stamp,
                            visitor=True,
                        )
                        .returning(*users.c)
                    )
                ).one()
                await conn.execute(
                    insert(widget_identities).values(
                        inbox_id=inbox_id,
                        external_id=external_id,
                        visitor_id=row.id,
                        created_at=stamp,
                    )
                )
                return user_from_row(row)
        except IntegrityError:
            found = await self.find_visitor(inbox_id, external_id)
            if found is None:
                raise
            return found
