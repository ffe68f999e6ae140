"""The release watcher: one task per node that keeps the gates live and pulls the hard stop.

Each tick it stores the queued client reports and this node's counts, announces flag changes
made elsewhere, recomputes the gates (exported as metrics) and — seed 004 §4 — on a P0 breach
during a rollout trips the kill switch by itself (back to canary_1, kill on, reason recorded)
and notifies the webhook. A report carrying a P0 counter wakes it at once. A stage nearing or
past its maximum time is logged and sent to the webhook once per stage and level.

Client reports are claims, so a kill needs a P0 counter from PARLEY_RELEASE_P0_MIN_REPORTERS
distinct users; fewer is an alert (log, metric, webhook `release.p0_alert`) and the gates say
HOLD — one account cannot stop a release.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

import httpx

from parley import metrics
from parley.background import LoopHealth
from parley.core.rollout import Decision, Stage
from parley.features.release.gates import GateReport
from parley.features.release.rollout import Rollout, state_json
from parley.features.release.samples import SampleRecorder
from parley.logs import url_host
from parley.settings import Settings
from parley.storage.release import ClientReportRow

log = logging.getLogger(__name__)

PRUNE_EVERY = timedelta(hours=1)
P0_REPORTS_READ = 1000
MAX_NAMED = 20
GATES_EVERY = timedelta(minutes=1)


class ReleaseWatcher:
    def __init__(self, *, settings: Settings, rollout: Rollout, recorder: SampleRecorder) -> None:
        self.settings = settings
        self.rollout = rollout
        self.recorder = recorder
        self.flags = rollout.flags
        self.last_gates: GateReport | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_prune = rollout.clock() - PRUNE_EVERY
        self._last_full = rollout.clock() - GATES_EVERY
        self._told: set[tuple[str, str]] = set()  # (stage start, level) already notified
        self._alerted_up_to = 0  # the newest P0 report an alert was raised for
        self._health = LoopHealth("release_watcher", log)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="release-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.recorder.flush()  # what clients reported last is still evidence
        except Exception as exc:
            LoopHealth("release_final_flush", log).failed(exc, "the final evidence flush")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.recorder.p0_seen.wait(), self.settings.release_watch_seconds
                )
            self.recorder.p0_seen.clear()
            try:
                await self.tick()
            except Exception as exc:  # the database may be restarting; the next tick retries
                self._health.failed(exc, "tick")
            else:
                self._health.succeeded()

    async def tick(self) -> GateReport | None:
        """One round: store samples, announce flag changes, check P0, maybe kill.

        The P0 check is one query for offending reports (normally none); the full gates, with
        their per-cohort statistics, are recomputed on a breach and every `GATES_EVERY` for the
        exported metrics.
        """
        now = self.rollout.clock()
        await self.recorder.flush()
        await self.recorder.sample_server(now)
        await self.flags.announce_pending()
        state = await self.rollout.get_state()
        since = self.rollout.policy.window_start(state, now)
        offending = await self.rollout.store.list_p0_reports(since, limit=P0_REPORTS_READ)
        metrics.RELEASE_P0_REPORTERS.set(len({r.user_id for r in offending}))
        if not offending and self.last_gates and now - self._last_full < GATES_EVERY:
            return None
        gates = await self.rollout.compute_gates(state)
        self._last_full = now
        if gates.p0_corroborated and gates.rollout_decision is Decision.ROLLBACK:
            await self._hard_stop(gates)
        elif gates.p0_breached and offending[-1].id > self._alerted_up_to:
            self._alerted_up_to = offending[-1].id
            await self._alert(gates, offending)
        await self._stage_time(gates, state.stage_since.isoformat())
        self.last_gates = gates
        _export(gates, state.stage, state.killed)
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            retention = timedelta(seconds=self.settings.release_sample_retention_seconds)
            await self.rollout.store.prune_samples(now - retention)
        return gates

    async def _hard_stop(self, gates: GateReport) -> None:
        """Seed 004 §4: kill switch on, back to canary_1, reason recorded; tell the webhook."""
        reason = "hard stop: p0 invariant breach: " + "; ".join(
            f"{c.name}: {c.detail}" for c in gates.checks if c.gate == "p0" and not c.ok
        )
        state, moved = await self.rollout.do_hard_stop(reason=reason, gates=gates)
        if moved:
            log.error("release %s: %s", state.release, reason)
            await self.notify(
                {"event": "release.killed", "state": state_json(state), **_why(gates)}
            )

    async def _stage_time(self, gates: GateReport, stage_key: str) -> None:
        """Warn once when a stage nears its maximum time, and once more when it is past it."""
        over = [c for c in gates.checks if c.name == "stage_time" and c.ok is False]
        level, lines = ("hold", [c.detail for c in over]) if over else ("warn", gates.warnings)
        if not lines or (stage_key, level) in self._told:
            return
        self._told.add((stage_key, level))
        log.warning("release %s: %s", gates.stage, "; ".join(lines))
        await self.notify(
            {"event": f"release.stage_time_{level}", "stage": gates.stage.value, **_why(gates)}
        )

    async def _alert(self, gates: GateReport, offending: list[ClientReportRow]) -> None:
        """P0 reports too few users corroborate: a person looks; the release holds, not dies."""
        reporters = sorted({r.user_id for r in offending})
        metrics.RELEASE_P0_ALERTS.inc()
        log.warning(
            "release: P0 counters reported by %d user(s) %s (reports %s); a kill needs %d "
            "distinct users — holding, not killing",
            len(reporters),
            reporters,
            [r.id for r in offending[:MAX_NAMED]],
            self.settings.release_p0_min_reporters,
        )
        await self.notify(
            {
                "event": "release.p0_alert",
                "reporters": reporters,
                "reports": [
                    {"id": r.id, "user_id": r.user_id, "transport": r.transport}
                    for r in offending[:MAX_NAMED]
                ],
                "min_reporters": self.settings.release_p0_min_reporters,
                **_why(gates),
            }
        )

    async def notify(self, payload: dict[str, Any]) -> None:
        """POST `payload` to PARLEY_RELEASE_WEBHOOK_URL; a failure is logged, never raised."""
        url = self.settings.release_webhook_url
        if not url:
            return
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.post(url, json=payload)
                response.raise_for_status()
        except httpx.HTTPError as exc:
            metrics.RELEASE_WEBHOOK_FAILURES.inc()
            # Only the host: webhook URLs often carry their secret in the path.
            log.warning("release webhook %s failed: %s", url_host(url), type(exc).__name__)


def _why(gates: GateReport) -> dict[str, Any]:
    return {
        "decision": gates.rollout_decision.value,
        "reasons": gates.reasons,
        "warnings": gates.warnings,
        "gates": {
            "gate_p0_ok": gates.gate_p0_ok,
            "gate_p1_ok": gates.gate_p1_ok,
            "gate_rollout_ok": gates.gate_rollout_ok,
        },
    }


def _export(gates: GateReport, stage: Stage, killed: bool) -> None:
    metrics.RELEASE_STAGE_PERCENT.set(stage.percentage)
    metrics.RELEASE_KILL_SWITCH.set(1 if killed else 0)
    for name, ok in (
        ("p0", gates.gate_p0_ok),
        ("p1", gates.gate_p1_ok),
        ("rollout", gates.gate_rollout_ok),
    ):
        metrics.RELEASE_GATE_OK.labels(name).set(-1 if ok is None else int(ok))
    for decision in Decision:
        metrics.RELEASE_DECISION.labels(decision.value).set(int(decision is gates.rollout_decision))
