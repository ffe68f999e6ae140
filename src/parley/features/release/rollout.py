"""Rollout: read the state and gates, and move the release (promote, hold, kill, resume, abort).

Every move is a compare-and-set on the state it was decided on, and lands in one transaction
with its decision-log entry and the release flag's new percentage. A promotion goes through only
on `PROCEED`, unless an admin overrides it — which the log records as an override.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from parley import metrics
from parley.core.audit import Target
from parley.core.errors import Conflict, ErrorCode
from parley.core.models import User
from parley.core.rollout import (
    P0_COUNTERS,
    Action,
    Decision,
    HistoryEntry,
    RolloutState,
    Stage,
    check_transition,
    target_stage,
)
from parley.features.release.flags import FlagService
from parley.features.release.gates import (
    GatePolicy,
    GateReport,
    MetricWindow,
    Observation,
    SafetyCounts,
    evaluate_gates,
)
from parley.services.audit import AuditLog
from parley.settings import Settings
from parley.storage.release import ClientReportRow, ReleaseStore

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
MAX_REPORTS_PER_WINDOW = 50_000
WATCHER = "watcher"  # the actor of automatic kills
ATTEMPTS = 3
# Who moves the release: a signed-in admin, or a name (`cli:<login>`, `watcher`).
Actor = User | str
MAX_NAMED_P0 = 10


def utc_now() -> datetime:
    return datetime.now(UTC)


class Rollout:
    def __init__(
        self,
        *,
        settings: Settings,
        store: ReleaseStore,
        flags: FlagService,
        audit: AuditLog,
        clock: Clock = utc_now,
        flush: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.flags = flags
        self.audit = audit
        self.clock = clock
        # Stores the reports this node still holds, so the gates see every one received.
        self.flush = flush
        self.policy = GatePolicy.from_settings(settings)
        # Overdue disputes and the moderation backlog (P1 inputs), wired by parley/assembly.py.
        self.safety: Callable[[], Awaitable[SafetyCounts]] | None = None
        # Told (actor, reason) whenever the kill switch goes on: Telegram alerts (notify).
        self.on_kill: Callable[[str, str], Awaitable[None]] | None = None
        # Notification outcomes per channel since a time (the drop-rate gate); set by assembly.
        self.notification_outcomes: (
            Callable[[datetime], Awaitable[dict[str, dict[str, int]]]] | None
        ) = None

    # -- reading -----------------------------------------------------------------------------

    async def get_state(self) -> RolloutState:
        return await self.store.get_state()

    async def compute_gates(self, state: RolloutState | None = None) -> GateReport:
        """Seed 004's release gates for the current stage, from the stored samples."""
        if self.flush is not None:
            await self.flush()
        state = state or await self.store.get_state()
        now = self.clock()
        window = await self._window(self.policy.window_start(state, now), now)
        observation = None
        if state.stage is Stage.FULL:
            observation = await self._observe(state, now)
        return evaluate_gates(state, window, self.policy, now, observation)

    async def _window(self, start: datetime, now: datetime) -> MetricWindow:
        return MetricWindow(
            start=start,
            end=now,
            reports=await self.store.list_client_reports(start, MAX_REPORTS_PER_WINDOW),
            server=await self.store.sum_server_samples(start),
            safety=await self.safety() if self.safety is not None else None,
            notifications=(
                await self.notification_outcomes(start) if self.notification_outcomes else {}
            ),
        )

    async def _observe(self, state: RolloutState, now: datetime) -> Observation:
        """The whole time at `full` so far: any P0 report in it, and its P1 gate."""
        since = state.stage_since
        whole = evaluate_gates(state, await self._window(since, now), self.policy, now)
        breaches = await self.store.list_p0_reports(since, limit=MAX_NAMED_P0)
        reasons = [f"P0 report #{r.id} ({_p0_names(r)})" for r in breaches]
        reasons += [
            f"P1 {c.name}: {c.detail}" for c in whole.checks if c.gate == "p1" and c.ok is False
        ]
        return Observation(
            since=since,
            p0_ok=not breaches if whole.enough_data or breaches else None,
            p1_ok=whole.gate_p1_ok,
            reasons=reasons,
        )

    async def list_history(self, limit: int = 20) -> list[HistoryEntry]:
        return await self.store.list_history(limit)

    async def export(self, limit: int = 10_000) -> dict[str, Any]:
        """State, current gates and the whole decision log, as JSON-ready data."""
        state = await self.store.get_state()
        gates = await self.compute_gates(state)
        return {
            "exported_at": _iso(self.clock()),
            "state": state_json(state),
            "gates": gates.snapshot(),
            "history": [entry_json(e) for e in await self.store.list_history(limit)],
        }

    # -- moving ------------------------------------------------------------------------------

    async def do_promote(
        self, actor: Actor, *, owner: str = "", reason: str = "", override: bool = False
    ) -> tuple[RolloutState, GateReport]:
        """One stage forward, only on PROCEED (or an admin's recorded override)."""
        state, report, _ = await self._move(
            Action.PROMOTE, actor, owner=owner, reason=reason, override=override
        )
        return state, report

    async def do_hold(self, actor: Actor, *, reason: str) -> tuple[RolloutState, GateReport]:
        """Back to canary_1 for investigation, kill switch untouched (seed 004 §7.1)."""
        state, report, _ = await self._move(Action.HOLD, actor, reason=reason)
        return state, report

    async def do_kill(self, actor: Actor, *, reason: str) -> tuple[RolloutState, GateReport]:
        """Back to canary_1 with the kill switch on: the release flag is off for everyone."""
        state, report, _ = await self._move(Action.KILL, actor, reason=reason)
        metrics.RELEASE_KILLS.labels("manual").inc()
        await self._tell_kill(actor, reason)
        if self.settings.release_kill_sse_only:
            await self.flags.set_transport(
                actor if isinstance(actor, str) else actor.name, "sse_only"
            )
        return state, report

    async def do_hard_stop(self, *, reason: str, gates: GateReport) -> tuple[RolloutState, bool]:
        """The watcher's kill: only if a rollout is on and not killed yet (any node may try)."""
        try:
            state, _, moved = await self._move(
                Action.KILL, WATCHER, reason=reason, gates=gates, once=True
            )
        except Conflict as exc:
            if exc.code is not ErrorCode.ILLEGAL_TRANSITION:
                raise
            return await self.store.get_state(), False  # the release is off: nothing to stop
        if not moved:
            return state, False
        metrics.RELEASE_KILLS.labels("watcher").inc()
        await self._tell_kill(WATCHER, reason)
        if self.settings.release_kill_sse_only:
            await self.flags.set_transport(WATCHER, "sse_only")
        return state, True

    async def _tell_kill(self, actor: str, reason: str) -> None:
        if self.on_kill is None:
            return
        try:
            await self.on_kill(actor, reason)
        except Exception:  # an alert channel's trouble must not undo or block the kill
            log.exception("kill alert failed")

    async def do_resume(
        self, actor: Actor, *, reason: str, owner: str = ""
    ) -> tuple[RolloutState, GateReport]:
        """Kill switch off again (stage stays canary_1): the canary cohort gets it back."""
        state, report, _ = await self._move(Action.RESUME, actor, owner=owner, reason=reason)
        return state, report

    async def do_abort(self, actor: Actor, *, reason: str) -> tuple[RolloutState, GateReport]:
        """The release off entirely (0 %)."""
        state, report, _ = await self._move(Action.ABORT, actor, reason=reason)
        return state, report

    async def _move(
        self,
        action: Action,
        who: Actor,
        *,
        owner: str = "",
        reason: str = "",
        override: bool = False,
        gates: GateReport | None = None,
        once: bool = False,
    ) -> tuple[RolloutState, GateReport, bool]:
        """Decide and apply `action`: (state, gates it was decided on, whether it moved).

        `once`: do nothing if the kill switch is already on (another node's watcher was first).
        """
        actor = who.name if isinstance(who, User) else who
        for _ in range(ATTEMPTS):
            state = await self.store.get_state()
            report = gates or await self.compute_gates(state)
            if once and state.killed:
                return state, report, False
            gates = None  # a retry decides again on fresh data
            try:
                entry, killed = self._entry(action, state, report, actor, owner, reason, override)
            except Conflict as refused:
                if refused.code is ErrorCode.GATES_NOT_PASSED:
                    target = target_stage(action, state.stage)
                    await self._log_refusal(state, target, report, who, owner, refused.message)
                raise
            moved = await self.store.record_transition(
                expected=state,
                to_stage=entry.to_stage,
                killed=killed,
                entry=entry,
                announced=self.flags.live,
            )
            if moved is not None:
                metrics.RELEASE_TRANSITIONS.labels(action.value).inc()
                log.info(
                    "release %s: %s → %s by %s (%s)",
                    action.value,
                    entry.from_stage,
                    entry.to_stage,
                    actor,
                    entry.decision,
                )
                await self.audit.record(
                    who,
                    f"rollout.{action.value}",
                    Target.of("release", moved.release),
                    before=_summary(state),
                    after={**_summary(moved), "decision": entry.decision, "owner": entry.owner},
                    reason=entry.reason,
                )
                revision, _ = await self.flags.store.get_revision()
                await self.flags.announce(revision, [moved.release])
                return moved, report, True
        raise Conflict("the rollout changed while deciding; try again", ErrorCode.CONFLICT)

    async def _log_refusal(
        self,
        state: RolloutState,
        target: Stage,
        report: GateReport,
        who: Actor,
        owner: str,
        why: str,
    ) -> None:
        """A refused promotion is a decision too: the log shows who asked, for which move
        (`from → to` names the stage asked for; the stage did not change) and why it was no."""
        actor = who.name if isinstance(who, User) else who
        await self.audit.record(
            who,
            "rollout.promote_refused",
            Target.of("release", state.release),
            before=_summary(state),
            after={"decision": report.rollout_decision, "owner": owner or actor},
            reason=why,
        )
        await self.store.add_history(
            HistoryEntry(
                id=0,
                at=self.clock(),
                action=Action.PROMOTE,
                from_stage=state.stage,
                to_stage=target,
                killed=state.killed,
                decision=report.rollout_decision,
                override=False,
                reason=why,
                actor=actor,
                owner=owner or actor,
                gates=report.snapshot(),
            )
        )

    def _entry(
        self,
        action: Action,
        state: RolloutState,
        report: GateReport,
        actor: str,
        owner: str,
        reason: str,
        override: bool,
    ) -> tuple[HistoryEntry, bool]:
        target = target_stage(action, state.stage)
        check_transition(state.stage, target)
        proceed = report.rollout_decision is Decision.PROCEED
        if action is Action.PROMOTE and not proceed and not override:
            raise Conflict(
                f"promotion {state.stage} → {target} refused: the decision is "
                f"{report.rollout_decision}: " + "; ".join(report.reasons),
                ErrorCode.GATES_NOT_PASSED,
            )
        if action is Action.RESUME and not state.killed:
            raise Conflict("the kill switch is already off", ErrorCode.ILLEGAL_TRANSITION)
        killed = {Action.KILL: True, Action.RESUME: False, Action.ABORT: False}.get(
            action, state.killed
        )
        default_reason = {
            Action.PROMOTE: f"promote to {target}",
            Action.HOLD: "hold rollout for investigation",
            Action.KILL: "kill switch enabled",
            Action.RESUME: "kill switch cleared",
            Action.ABORT: "release switched off",
        }[action]
        reason = reason.strip() or default_reason
        if override:
            reason = f"ADMIN OVERRIDE of {report.rollout_decision}: {reason}"
        entry = HistoryEntry(
            id=0,
            at=self.clock(),
            action=action,
            from_stage=state.stage,
            to_stage=target,
            killed=killed,
            decision=report.rollout_decision,
            override=override and report.rollout_decision is not Decision.PROCEED,
            reason=reason,
            actor=actor,
            owner=owner or actor,
            gates=report.snapshot(),
        )
        return entry, killed


def state_json(state: RolloutState) -> dict[str, Any]:
    return {
        "release": state.release,
        "stage": state.stage.value,
        "percentage": state.stage.percentage,
        "killed": state.killed,
        "reason": state.reason,
        "actor": state.actor,
        "changed_at": _iso(state.changed_at),
        "stage_since": _iso(state.stage_since),
    }


def entry_json(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": _iso(entry.at),
        "action": entry.action.value,
        "from_stage": entry.from_stage.value,
        "to_stage": entry.to_stage.value,
        "killed": entry.killed,
        "decision": entry.decision.value,
        "override": entry.override,
        "refused": entry.refused,
        "reason": entry.reason,
        "actor": entry.actor,
        "owner": entry.owner,
        "gates": entry.gates,
    }


def _summary(state: RolloutState) -> dict[str, Any]:
    return {"stage": state.stage, "killed": state.killed}


def _p0_names(report: ClientReportRow) -> str:
    return ", ".join(f"{n} {report.counters[n]}" for n in P0_COUNTERS if report.counters.get(n))


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
