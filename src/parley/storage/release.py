"""ReleaseStore: the rollout state, its decision log, and the metric samples gates read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update

from parley.core.rollout import P0_COUNTERS, Action, Decision, HistoryEntry, RolloutState, Stage
from parley.storage.database import Database
from parley.storage.flags import bump_revision
from parley.storage.rows import _json, utc
from parley.storage.schema import (
    flags,
    release_client_reports,
    release_history,
    release_server_samples,
    release_state,
)

# The counters clients report (services/stream.py REPORTED_COUNTERS), one column each.
REPORT_COUNTERS = (*P0_COUNTERS, "forced_resyncs", "full_state_loads")


@dataclass(frozen=True, slots=True)
class ClientReportRow:
    """One stored client report, with the cohort its user was in when it arrived."""

    id: int
    at: datetime
    user_id: int
    cohort: str
    transport: str
    counters: dict[str, int]
    write_receipt_ms: list[float]


@dataclass(frozen=True, slots=True)
class ServerSampleRow:
    at: datetime
    node: str
    requests: int
    errors_5xx: int
    stream_opens: int
    resync_range_unavailable: int
    resync_throttled: int
    sends: int = 0
    send_stalls: int = 0


def _state_from_row(row: Any) -> RolloutState:
    return RolloutState(
        release=row.release,
        stage=Stage(row.stage),
        killed=bool(row.killed),
        reason=row.reason,
        actor=row.actor,
        changed_at=utc(row.changed_at),
        stage_since=utc(row.stage_since),
        version=int(row.version),
    )


def _history_from_row(row: Any) -> HistoryEntry:
    return HistoryEntry(
        id=int(row.id),
        at=utc(row.at),
        action=Action(row.action),
        from_stage=Stage(row.from_stage),
        to_stage=Stage(row.to_stage),
        killed=bool(row.killed),
        decision=Decision(row.decision),
        override=bool(row.override),
        reason=row.reason,
        actor=row.actor,
        owner=row.owner,
        gates=_json(row.gates),
    )


def _history_values(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "at": entry.at,
        "action": entry.action.value,
        "from_stage": entry.from_stage.value,
        "to_stage": entry.to_stage.value,
        "killed": entry.killed,
        "decision": entry.decision.value,
        "override": entry.override,
        "reason": entry.reason,
        "actor": entry.actor,
        "owner": entry.owner,
        "gates": entry.gates,
    }


class ReleaseStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- state and decision log ---------------------------------------------------------------

    async def get_state(self) -> RolloutState:
        async with self.db.read() as conn:
            row = (await conn.execute(select(release_state).where(release_state.c.id == 1))).one()
        return _state_from_row(row)

    async def record_transition(
        self,
        *,
        expected: RolloutState,
        to_stage: Stage,
        killed: bool,
        entry: HistoryEntry,
        announced: bool,
    ) -> RolloutState | None:
        """Move the rollout, log it and set the release flag, in one transaction.

        Compare-and-set on `expected`: None if someone else changed the state first (the caller
        re-reads and decides again). The release flag follows: on at the stage's percentage,
        off while the kill switch is on or the release is off.
        """
        at = entry.at
        async with self.db.write() as conn:
            moved = await conn.execute(
                update(release_state)
                .where(
                    release_state.c.id == 1,
                    release_state.c.version == expected.version,
                )
                .values(
                    version=expected.version + 1,
                    stage=to_stage.value,
                    killed=killed,
                    reason=entry.reason,
                    actor=entry.actor,
                    changed_at=at,
                    # Every move starts a fresh window and dwell: evidence from before a kill
                    # or a hold is in the log, and must not trip or pass the next stage.
                    stage_since=at,
                )
            )
            if not moved.rowcount:
                return None
            await conn.execute(insert(release_history).values(**_history_values(entry)))
            await conn.execute(
                update(flags)
                .where(flags.c.key == expected.release)
                .values(
                    enabled=to_stage is not Stage.OFF and not killed,
                    percentage=to_stage.percentage,
                    updated_at=at,
                    updated_by=entry.actor,
                )
            )
            await bump_revision(conn, announced=announced)
            row = (await conn.execute(select(release_state).where(release_state.c.id == 1))).one()
        return _state_from_row(row)

    async def add_history(self, entry: HistoryEntry) -> None:
        """A decision that moved nothing (a refused promotion)."""
        async with self.db.write() as conn:
            await conn.execute(insert(release_history).values(**_history_values(entry)))

    async def list_history(self, limit: int) -> list[HistoryEntry]:
        """The newest `limit` entries, newest first."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(release_history).order_by(release_history.c.id.desc()).limit(limit)
            )
            return [_history_from_row(row) for row in rows]

    # -- metric samples -------------------------------------------------------------------------

    async def add_client_reports(self, rows: Sequence[dict[str, Any]]) -> None:
        """Rows with `at`, `user_id`, `cohort`, `transport`, `counters`, `write_receipt_ms`."""
        if rows:
            values = [
                {
                    **{k: v for k, v in row.items() if k != "counters"},
                    **{name: int(row["counters"].get(name, 0)) for name in REPORT_COUNTERS},
                }
                for row in rows
            ]
            async with self.db.write() as conn:
                await conn.execute(insert(release_client_reports), values)

    async def add_server_sample(self, row: dict[str, Any]) -> None:
        async with self.db.write() as conn:
            await conn.execute(insert(release_server_samples).values(**row))

    async def list_client_reports(self, since: datetime, limit: int) -> list[ClientReportRow]:
        """Reports at or after `since`, newest first, at most `limit`."""
        query = select(release_client_reports).where(release_client_reports.c.at >= since)
        return await self._reports(query.order_by(release_client_reports.c.id.desc()).limit(limit))

    async def list_p0_reports(self, since: datetime, limit: int = 100) -> list[ClientReportRow]:
        """Reports at or after `since` that carry a P0 counter (normally none)."""
        t = release_client_reports.c
        query = select(release_client_reports).where(
            t.at >= since, or_(*(t[name] > 0 for name in P0_COUNTERS))
        )
        return await self._reports(query.order_by(t.id).limit(limit))

    async def _reports(self, query: Any) -> list[ClientReportRow]:
        async with self.db.read() as conn:
            rows = await conn.execute(query)
            return [
                ClientReportRow(
                    id=int(row.id),
                    at=utc(row.at),
                    user_id=int(row.user_id),
                    cohort=row.cohort,
                    transport=row.transport,
                    counters={name: int(getattr(row, name)) for name in REPORT_COUNTERS},
                    write_receipt_ms=[float(v) for v in _json(row.write_receipt_ms)],
                )
                for row in rows
            ]

    async def sum_server_samples(self, since: datetime) -> ServerSampleRow:
        """Every node's counts since `since`, added up."""
        t = release_server_samples.c
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        func.coalesce(func.sum(t.requests), 0),
                        func.coalesce(func.sum(t.errors_5xx), 0),
                        func.coalesce(func.sum(t.stream_opens), 0),
                        func.coalesce(func.sum(t.resync_range_unavailable), 0),
                        func.coalesce(func.sum(t.resync_throttled), 0),
                        func.coalesce(func.sum(t.sends), 0),
                        func.coalesce(func.sum(t.send_stalls), 0),
                    ).where(t.at >= since)
                )
            ).one()
        return ServerSampleRow(since, "all", *(int(value) for value in row))

    async def prune_samples(self, before: datetime) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                delete(release_client_reports).where(release_client_reports.c.at < before)
            )
            await conn.execute(
                delete(release_server_samples).where(release_server_samples.c.at < before)
            )
