"""CallStore: calls, their state transitions, and the claims that keep devices to one call.

Every transition is one conditional UPDATE (`... WHERE state IN (...)`) in a transaction that
also takes or releases the call's claims, so on any number of nodes exactly one of two racing
actions wins (an answer and the ring timeout, two devices answering) and a device or a pair of
people is never in two live calls.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from parley.core.calls import Call, CallState, EndReason, Media
from parley.core.errors import Conflict, ErrorCode
from parley.storage.database import Database
from parley.storage.rows import _json, call_from_row
from parley.storage.schema import call_claims, calls

LIVE = (CallState.RINGING.value, CallState.ACTIVE.value)


def device_claim(user_id: int, device: str) -> str:
    return f"device:{user_id}:{device}"


def pair_claim(conversation_id: int, a: int, b: int) -> str:
    low, high = sorted((a, b))
    return f"pair:{conversation_id}:{low}:{high}"


class CallStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_call(
        self,
        *,
        call_id: str,
        conversation_id: int,
        caller_id: int,
        caller_device: str,
        callee_id: int,
        media: Media,
        offer_sdp: str,
        created_at: datetime,
        ring_deadline: datetime,
    ) -> tuple[Call, bool]:
        """Store a ringing call with its claims; `(call, False)` if the id was already stored.

        A claim held by another live call raises 409 ERR_CALL_BUSY naming that call.
        """
        claims = [
            device_claim(caller_id, caller_device),
            pair_claim(conversation_id, caller_id, callee_id),
        ]
        try:
            async with self.db.write() as conn:
                found = (await conn.execute(select(calls).where(calls.c.id == call_id))).first()
                if found is not None:
                    return call_from_row(found), False
                row = (
                    await conn.execute(
                        insert(calls)
                        .values(
                            id=call_id,
                            conversation_id=conversation_id,
                            caller_id=caller_id,
                            caller_device=caller_device,
                            callee_id=callee_id,
                            callee_device=None,
                            media=media.value,
                            state=CallState.RINGING.value,
                            end_reason=None,
                            created_at=created_at,
                            ring_deadline=ring_deadline,
                            offer_sdp=offer_sdp,
                            caller_candidates=[],
                            callee_candidates=[],
                        )
                        .returning(*calls.c)
                    )
                ).one()
                await conn.execute(
                    insert(call_claims), [{"key": k, "call_id": call_id} for k in claims]
                )
                return call_from_row(row), True
        except IntegrityError:
            existing = await self.get_call(call_id)
            if existing is not None:  # the same offer, stored by a concurrent retry
                return existing, False
            raise await self._busy(claims) from None

    async def _busy(self, claims: list[str]) -> Conflict:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(call_claims.c.key, call_claims.c.call_id).where(
                        call_claims.c.key.in_(claims)
                    )
                )
            ).all()
        holders = {row.key.split(":", 1)[0]: row.call_id for row in rows}
        if "device" in holders:
            message = "this device is already in a call; hang that one up first"
        else:
            message = "you two already have a call ringing or going on in this conversation"
        return Conflict(
            message,
            ErrorCode.CALL_BUSY,
            details={"call_id": holders.get("device") or holders.get("pair")},
        )

    async def get_call(self, call_id: str) -> Call | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(calls).where(calls.c.id == call_id))).first()
        return call_from_row(row) if row else None

    async def transition(
        self,
        call_id: str,
        *,
        from_states: tuple[CallState, ...],
        to: CallState,
        end_reason: EndReason | None,
        at: datetime,
        answered_by: tuple[int, str] | None = None,
        answer_sdp: str | None = None,
    ) -> Call | None:
        """Move the call if it is in one of `from_states`; None if it was not (it moved first).

        `answered_by` (user, device) takes that device's claim; a call leaving the live states
        releases all of its claims.
        """
        values: dict[str, Any] = {"state": to.value}
        if answered_by is not None:
            values |= {"callee_device": answered_by[1], "answered_at": at, "answer_sdp": answer_sdp}
        if not to.live:
            values |= {"end_reason": end_reason.value if end_reason else None, "ended_at": at}
        try:
            async with self.db.write() as conn:
                row = (
                    await conn.execute(
                        update(calls)
                        .where(
                            calls.c.id == call_id, calls.c.state.in_([s.value for s in from_states])
                        )
                        .values(**values)
                        .returning(*calls.c)
                    )
                ).first()
                if row is None:
                    return None
                if answered_by is not None:
                    await conn.execute(
                        insert(call_claims).values(key=device_claim(*answered_by), call_id=call_id)
                    )
                if not to.live:
                    await conn.execute(delete(call_claims).where(call_claims.c.call_id == call_id))
                return call_from_row(row)
        except IntegrityError:
            assert answered_by is not None  # only an answer inserts a claim
            raise await self._busy([device_claim(*answered_by)]) from None

    async def add_candidate(
        self, call_id: str, *, caller: bool, candidate: dict[str, Any], limit: int
    ) -> bool:
        """Keep a candidate one side sent while the call is live (at most `limit` per side)."""
        column = calls.c.caller_candidates if caller else calls.c.callee_candidates
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    select(column.label("kept"))
                    .where(calls.c.id == call_id, calls.c.state.in_(LIVE))
                    .with_for_update()
                )
            ).first()
            if row is None:
                return False
            kept = list(_json(row.kept) or [])
            if len(kept) >= limit:
                return False
            await conn.execute(
                update(calls).where(calls.c.id == call_id).values({column.name: [*kept, candidate]})
            )
            return True

    async def has_overdue(self, now: datetime, answered_before: datetime) -> bool:
        """Whether a sweep would end anything: a read, so an idle sweeper takes no write lock."""
        query = (
            select(calls.c.id)
            .where(
                or_(
                    (calls.c.state == CallState.RINGING.value) & (calls.c.ring_deadline <= now),
                    (calls.c.state == CallState.ACTIVE.value)
                    & (calls.c.answered_at <= answered_before),
                )
            )
            .limit(1)
        )
        async with self.db.read() as conn:
            return (await conn.execute(query)).first() is not None

    async def sweep_unanswered(self, now: datetime) -> list[Call]:
        """Every ringing call past its deadline becomes missed (each by exactly one sweeper)."""
        async with self.db.write() as conn:
            rows = (
                await conn.execute(
                    update(calls)
                    .where(calls.c.state == CallState.RINGING.value, calls.c.ring_deadline <= now)
                    .values(
                        state=CallState.MISSED.value,
                        end_reason=EndReason.TIMEOUT.value,
                        ended_at=now,
                    )
                    .returning(*calls.c)
                )
            ).all()
            if rows:
                ids = [row.id for row in rows]
                await conn.execute(delete(call_claims).where(call_claims.c.call_id.in_(ids)))
        return [call_from_row(row) for row in rows]

    async def sweep_overlong(self, now: datetime, answered_before: datetime) -> list[Call]:
        """Active calls answered before `answered_before` end (a tab that vanished mid-call)."""
        async with self.db.write() as conn:
            rows = (
                await conn.execute(
                    update(calls)
                    .where(
                        calls.c.state == CallState.ACTIVE.value,
                        calls.c.answered_at <= answered_before,
                    )
                    .values(
                        state=CallState.ENDED.value,
                        end_reason=EndReason.TIMEOUT.value,
                        ended_at=now,
                    )
                    .returning(*calls.c)
                )
            ).all()
            if rows:
                ids = [row.id for row in rows]
                await conn.execute(delete(call_claims).where(call_claims.c.call_id.in_(ids)))
        return [call_from_row(row) for row in rows]

    async def list_unrecorded(self, ended_before: datetime, limit: int = 100) -> list[Call]:
        """Finished calls whose timeline record is still to write (a node stopped in between)."""
        query = (
            select(calls)
            .where(
                calls.c.state.notin_(LIVE),
                calls.c.recorded_at.is_(None),
                calls.c.ended_at <= ended_before,
            )
            .order_by(calls.c.ended_at)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [call_from_row(row) for row in await conn.execute(query)]

    async def mark_recorded(self, call_id: str, at: datetime) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(calls).where(calls.c.id == call_id).values(recorded_at=at))

    async def list_calls(
        self, *, user_id: int | None = None, live: bool = False, limit: int = 50
    ) -> list[Call]:
        """Newest first; one user's calls (as caller or callee), or everyone's."""
        query = select(calls).order_by(calls.c.created_at.desc()).limit(limit)
        if user_id is not None:
            query = query.where(or_(calls.c.caller_id == user_id, calls.c.callee_id == user_id))
        if live:
            query = query.where(calls.c.state.in_(LIVE))
        async with self.db.read() as conn:
            return [call_from_row(row) for row in await conn.execute(query)]
