"""Release gates: from a window of metrics per cohort to PROCEED | HOLD | ROLLBACK (pure).

Seed 004 §5: promote only when `gate_p0_ok`, `gate_p1_ok` and `gate_rollout_ok` are all true
and `rollout_decision = PROCEED`. Every HOLD and ROLLBACK carries its reasons, naming the
metric, the values and, for P0, the offending reports. A gate without enough data is neither
green nor red but waiting (None), and waiting is HOLD: zero reports prove nothing, so "0
duplicates" counts only once the cohorts it covers have reached their minimums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from parley.core.rollout import P0_COUNTERS, Decision, RolloutState, Stage
from parley.features.release.stats import mann_whitney_u, mean, percentile
from parley.settings import Settings
from parley.storage.release import ClientReportRow, ServerSampleRow

CANARY, BASELINE = "canary", "baseline"
# Most write-receipt samples a cohort keeps for the comparison (the newest reports first).
MAX_SAMPLES = 20_000
MAX_NAMED_IDS = 10


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """Thresholds, minimums and dwell times: `PARLEY_RELEASE_*` settings."""

    dwell: dict[Stage, timedelta]
    window: timedelta
    # Past 80 % of a stage's maximum the gates warn; past the maximum they HOLD.
    max_stage: dict[Stage, timedelta] = field(default_factory=dict)
    observe_full: timedelta = timedelta(0)
    min_messages: int = 200
    min_sessions: int = 10
    max_write_receipt_p95_ms: float = 1000.0
    max_forced_resync_rate: float = 0.05
    max_full_state_rate: float = 0.05
    max_resync_error_rate: float = 0.05
    max_5xx_rate: float = 0.01
    max_send_stall_rate: float = 0.01
    max_overdue_disputes: int = 0
    max_moderation_backlog: int = 100
    max_notification_drop_rate: float = 0.01
    alpha: float = 0.05
    tolerance: float = 0.2
    # A P0 counter reported by fewer distinct users than this is a HOLD, not a ROLLBACK: one
    # account must not be able to stop a release (client reports are claims).
    p0_min_reporters: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> GatePolicy:
        return cls(
            dwell={
                Stage.CANARY_1: timedelta(seconds=settings.release_dwell_canary_1_seconds),
                Stage.CANARY_10: timedelta(seconds=settings.release_dwell_canary_10_seconds),
                Stage.CANARY_50: timedelta(seconds=settings.release_dwell_canary_50_seconds),
            },
            window=timedelta(seconds=settings.release_window_seconds),
            max_stage={
                Stage.CANARY_1: timedelta(seconds=settings.release_max_canary_1_seconds),
                Stage.CANARY_10: timedelta(seconds=settings.release_max_canary_10_seconds),
                Stage.CANARY_50: timedelta(seconds=settings.release_max_canary_50_seconds),
            },
            observe_full=timedelta(seconds=settings.release_observe_full_seconds),
            min_messages=settings.release_min_messages,
            min_sessions=settings.release_min_sessions,
            max_write_receipt_p95_ms=settings.release_max_write_receipt_p95_ms,
            max_forced_resync_rate=settings.release_max_forced_resync_rate,
            max_full_state_rate=settings.release_max_full_state_rate,
            max_resync_error_rate=settings.release_max_resync_error_rate,
            max_5xx_rate=settings.release_max_5xx_rate,
            max_send_stall_rate=settings.release_max_send_stall_rate,
            max_overdue_disputes=settings.release_max_overdue_disputes,
            max_moderation_backlog=settings.release_max_moderation_backlog,
            max_notification_drop_rate=settings.release_max_notification_drop_rate,
            alpha=settings.release_compare_alpha,
            tolerance=settings.release_compare_tolerance,
            p0_min_reporters=settings.release_p0_min_reporters,
        )

    def window_start(self, state: RolloutState, now: datetime) -> datetime:
        """Gates look at the current stage only, and at most `window` back."""
        return max(state.stage_since, now - self.window)


STAGE_WARN_SHARE = 0.8  # of a stage's maximum time: from here on the gates warn


@dataclass(frozen=True, slots=True)
class Observation:
    """What the post-`full` observation window holds so far (seed 004 §6.4 and §10)."""

    since: datetime
    p0_ok: bool | None
    p1_ok: bool | None
    reasons: list[str]


@dataclass(frozen=True, slots=True)
class SafetyCounts:
    """Trust & safety right now (seed 000: "no overdue disputes", moderation keeping up)."""

    overdue_disputes: int
    moderation_backlog: int


@dataclass(frozen=True, slots=True)
class MetricWindow:
    """What the gates read: client reports (each tagged with its cohort) and server counts."""

    start: datetime
    end: datetime
    reports: Sequence[ClientReportRow]
    server: ServerSampleRow
    safety: SafetyCounts | None = None
    # Notification deliveries finished in the window, per channel and status (sent, dead, ...).
    notifications: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(slots=True)
class Cohort:
    """One cohort's reports, summed."""

    name: str
    reports: int = 0
    users: set[int] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)
    offending: dict[str, list[int]] = field(default_factory=dict)
    # The distinct users who reported each P0 counter.
    reporters: dict[str, set[int]] = field(default_factory=dict)
    write_receipt_ms: list[float] = field(default_factory=list)
    per_report: dict[str, list[float]] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        return len(self.write_receipt_ms)

    @property
    def sessions(self) -> int:
        return len(self.users)

    def add(self, report: ClientReportRow) -> None:
        self.reports += 1
        self.users.add(report.user_id)
        for name in (*P0_COUNTERS, "forced_resyncs", "full_state_loads"):
            value = report.counters.get(name, 0)
            self.counters[name] = self.counters.get(name, 0) + value
            self.per_report.setdefault(name, []).append(float(value))
            if value and name in P0_COUNTERS:
                self.offending.setdefault(name, []).append(report.id)
                self.reporters.setdefault(name, set()).add(report.user_id)
        if len(self.write_receipt_ms) < MAX_SAMPLES:
            self.write_receipt_ms.extend(report.write_receipt_ms)

    def rate(self, counter: str) -> float | None:
        return self.counters.get(counter, 0) / self.reports if self.reports else None

    def summary(self) -> dict[str, Any]:
        return {
            "reports": self.reports,
            "sessions": self.sessions,
            "messages": self.messages,
            "write_receipt_p95_ms": percentile(self.write_receipt_ms, 0.95),
            "forced_resync_rate": self.rate("forced_resyncs"),
            "full_state_rate": self.rate("full_state_loads"),
            **{name: self.counters.get(name, 0) for name in P0_COUNTERS},
        }


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the gate table: green (True), red (False) or waiting for data (None)."""

    gate: str  # p0 | p1 | rollout
    name: str
    ok: bool | None
    value: Any
    threshold: Any
    detail: str
    baseline: Any = None
    # A P1 failure the baseline shares, or a P0 too few users reported, is not (yet) shown to be
    # the release's doing: HOLD, not ROLLBACK.
    attributable: bool = True


@dataclass(frozen=True, slots=True)
class GateReport:
    stage: Stage
    killed: bool
    evaluated_at: datetime
    window_start: datetime
    gate_p0_ok: bool | None
    gate_p1_ok: bool | None
    gate_rollout_ok: bool | None
    enough_data: bool
    rollout_decision: Decision
    reasons: list[str]
    checks: list[Check]
    cohorts: dict[str, dict[str, Any]]
    server: dict[str, Any]
    # Not reasons to stop, but to act soon (a stage nearing its maximum time).
    warnings: list[str] = field(default_factory=list)
    # At `full`: the observation window has passed with no P0 breach and no failed P1 gate.
    rollout_done: bool = False

    @property
    def p0_breached(self) -> bool:
        """A P0 counter above zero (never merely "not enough data")."""
        return self.gate_p0_ok is False

    @property
    def p0_corroborated(self) -> bool:
        """A P0 counter enough distinct users reported to stop the release by itself."""
        return any(c.gate == "p0" and c.ok is False and c.attributable for c in self.checks)

    def snapshot(self) -> dict[str, Any]:
        """The JSON the decision log and the API keep."""
        data = asdict(self)
        data["stage"] = self.stage.value
        data["rollout_decision"] = self.rollout_decision.value
        data["evaluated_at"] = _iso(self.evaluated_at)
        data["window_start"] = _iso(self.window_start)
        return data


def evaluate_gates(
    state: RolloutState,
    window: MetricWindow,
    policy: GatePolicy,
    now: datetime,
    observation: Observation | None = None,
) -> GateReport:
    """Seed 004's `chat_get_v11_release_gates()`, from the metrics in `window`.

    `observation`: at `full`, what the whole observation window holds (the done condition).
    """
    cohorts = {CANARY: Cohort(CANARY), BASELINE: Cohort(BASELINE)}
    for report in window.reports:
        cohorts[CANARY if report.cohort == CANARY else BASELINE].add(report)
    canary, baseline = cohorts[CANARY], cohorts[BASELINE]
    expected = _expected_cohorts(state)
    short = [
        f"{c.name} has {c.messages} of {policy.min_messages} messages and {c.sessions} of "
        f"{policy.min_sessions} sessions"
        for c in (cohorts[name] for name in expected)
        if c.messages < policy.min_messages or c.sessions < policy.min_sessions
    ]
    enough = not short
    comparable = enough and len(expected) == 2

    checks = [*_p0_checks(canary, baseline, "; ".join(short), policy.p0_min_reporters)]
    checks += _p1_client_checks(state, canary, baseline, policy, enough, comparable)
    checks += _p1_server_checks(window.server, policy)
    checks += _p1_safety_checks(window.safety, policy)
    checks += _p1_notification_checks(window.notifications, policy)
    rollout_checks, warnings = _rollout_checks(state, policy, now, observation)
    checks += rollout_checks

    p0_ok, p1_ok, rollout_ok = (_gate(checks, gate) for gate in ("p0", "p1", "rollout"))

    rollback: list[str] = []
    hold: list[str] = []
    for check in checks:
        if check.ok is False:
            severe = check.gate in ("p0", "p1") and check.attributable
            target = rollback if severe and state.stage is not Stage.OFF else hold
            target.append(f"{check.name}: {check.detail}")
    waiting = [c for c in checks if c.ok is None]
    if short:
        gates = sorted({f"gate_{c.gate}_ok" for c in waiting if c.gate != "rollout"})
        hold.append(
            f"waiting for data ({', '.join(gates) or 'cohort minimums'}): not enough messages "
            "yet: " + "; ".join(short)
        )
    for check in waiting:
        if check.gate == "rollout" or not short:
            hold.append(f"{check.name} waiting: {check.detail}")
    decision = Decision.ROLLBACK if rollback else Decision.HOLD if hold else Decision.PROCEED
    return GateReport(
        stage=state.stage,
        killed=state.killed,
        evaluated_at=now,
        window_start=window.start,
        gate_p0_ok=p0_ok,
        gate_p1_ok=p1_ok,
        gate_rollout_ok=rollout_ok,
        enough_data=enough,
        rollout_decision=decision,
        reasons=rollback + hold,
        checks=checks,
        cohorts={name: cohort.summary() for name, cohort in cohorts.items()},
        server=_server_summary(window.server),
        warnings=warnings,
        rollout_done=state.stage is Stage.FULL and decision is Decision.PROCEED,
    )


def _gate(checks: list[Check], gate: str) -> bool | None:
    """False if any check of `gate` failed, None if any waits for data, else True."""
    results = [c.ok for c in checks if c.gate == gate]
    return False if False in results else None if None in results else True


def _expected_cohorts(state: RolloutState) -> tuple[str, ...]:
    """Which cohorts must have data: before the canary starts (or while it is killed) everyone
    is on the current version, whose measurements are the evidence to start from."""
    if state.stage is Stage.OFF or state.killed:
        return (BASELINE,)
    if state.stage is Stage.FULL:
        return (CANARY,)
    return (CANARY, BASELINE)


def _p0_checks(canary: Cohort, baseline: Cohort, short: str, min_reporters: int) -> list[Check]:
    """A breach is red at once; zero is green only with enough data behind it."""
    checks = []
    for name in P0_COUNTERS:
        in_canary, in_baseline = canary.counters.get(name, 0), baseline.counters.get(name, 0)
        users = canary.reporters.get(name, set()) | baseline.reporters.get(name, set())
        corroborated = len(users) >= min_reporters
        if in_canary or in_baseline:
            ids = (canary.offending.get(name, []) + baseline.offending.get(name, []))[
                :MAX_NAMED_IDS
            ]
            who = ", ".join(f"#{u}" for u in sorted(users)[:MAX_NAMED_IDS])
            detail = (
                f"{in_canary + in_baseline} (canary {in_canary}, baseline {in_baseline}); "
                f"must be exactly 0; reports {', '.join(f'#{i}' for i in ids)} "
                f"by {len(users)} user(s) {who}"
            )
            if not corroborated:
                detail += (
                    f"; a rollback needs {min_reporters} distinct users: held until corroborated"
                )
        elif short:
            detail = f"0 so far, but not enough data to call it clean: {short}"
        else:
            detail = "0 in the window"
        checks.append(
            Check(
                gate="p0",
                name=name,
                ok=False if (in_canary or in_baseline) else None if short else True,
                value=in_canary,
                baseline=in_baseline,
                threshold=0,
                detail=detail,
                attributable=corroborated,
            )
        )
    return checks


@dataclass(frozen=True, slots=True)
class _ClientMetric:
    name: str
    limit: float
    slack: float  # absolute difference too small to matter, whatever the test says

    def value(self, cohort: Cohort) -> float | None:
        if self.name == "write_receipt_p95_ms":
            return percentile(cohort.write_receipt_ms, 0.95)
        return cohort.rate(_RATE_COUNTERS[self.name])

    def samples(self, cohort: Cohort) -> list[float]:
        if self.name == "write_receipt_p95_ms":
            return cohort.write_receipt_ms
        return cohort.per_report.get(_RATE_COUNTERS[self.name], [])


_RATE_COUNTERS = {"forced_resync_rate": "forced_resyncs", "full_state_rate": "full_state_loads"}


def _p1_client_checks(
    state: RolloutState,
    canary: Cohort,
    baseline: Cohort,
    policy: GatePolicy,
    enough: bool,
    comparable: bool,
) -> list[Check]:
    metrics = [
        _ClientMetric("write_receipt_p95_ms", policy.max_write_receipt_p95_ms, 5.0),
        _ClientMetric("forced_resync_rate", policy.max_forced_resync_rate, 0.0),
        _ClientMetric("full_state_rate", policy.max_full_state_rate, 0.0),
    ]
    # Before the canary starts (or while it is killed) the gates judge the current version.
    subject = baseline if state.stage is Stage.OFF or state.killed else canary
    checks = []
    for metric in metrics:
        value, base = metric.value(subject), metric.value(baseline)
        if subject is baseline:
            base = None
        if not enough:
            checks.append(
                Check("p1", metric.name, None, value, metric.limit, "not enough data", base)
            )
            continue
        if value is None:  # only when the minimums are 0: the operator asked for no data
            detail = "no samples (the cohort minimums are 0)"
            checks.append(Check("p1", metric.name, True, None, metric.limit, detail, base))
            continue
        problems = []
        if value > metric.limit:
            problems.append(f"{_fmt(value)} is above the threshold {_fmt(metric.limit)}")
        if comparable:
            problems += _compare(metric, canary, baseline, policy)
        shared = base is not None and base > metric.limit
        detail = "; ".join(problems) or f"{_fmt(value)} (threshold {_fmt(metric.limit)})"
        if shared and problems:
            detail += f"; the baseline is at {_fmt(base)} too"
        checks.append(
            Check(
                gate="p1",
                name=metric.name,
                ok=not problems,
                value=value,
                threshold=metric.limit,
                detail=detail,
                baseline=base,
                attributable=not shared,
            )
        )
    return checks


def _compare(
    metric: _ClientMetric, canary: Cohort, baseline: Cohort, policy: GatePolicy
) -> list[str]:
    """Kayenta-style: the canary regressed if it is significantly and materially worse."""
    first, second = metric.samples(canary), metric.samples(baseline)
    if not first or not second:
        return []
    test = mann_whitney_u(first, second)
    canary_mean, baseline_mean = mean(first) or 0.0, mean(second) or 0.0
    allowed = baseline_mean * (1 + policy.tolerance) + metric.slack
    if test.p_greater < policy.alpha and canary_mean > allowed:
        return [
            f"canary worse than baseline (Mann-Whitney p={test.p_greater:.4f} < "
            f"{policy.alpha}; mean {_fmt(canary_mean)} vs {_fmt(baseline_mean)}, "
            f"tolerance {policy.tolerance:.0%})"
        ]
    return []


def _p1_safety_checks(safety: SafetyCounts | None, policy: GatePolicy) -> list[Check]:
    """Overdue disputes and the moderation backlog: counts now, not rates over the window."""
    if safety is None:
        return []
    rows = [
        (
            "overdue_disputes",
            safety.overdue_disputes,
            policy.max_overdue_disputes,
            "active disputes past their SLA deadline",
        ),
        (
            "moderation_backlog",
            safety.moderation_backlog,
            policy.max_moderation_backlog,
            "open moderation queue items (reports and held messages)",
        ),
    ]
    # Deployment-wide and not caused by the release under test: a breach holds, never rolls back.
    return [
        Check(
            "p1",
            name,
            count <= limit,
            count,
            limit,
            f"{count} {what} (threshold {limit})",
            attributable=False,
        )
        for name, count, limit, what in rows
    ]


def _p1_server_checks(server: ServerSampleRow, policy: GatePolicy) -> list[Check]:
    rows = [
        ("error_5xx_rate", server.errors_5xx, server.requests, policy.max_5xx_rate, "requests"),
        (
            "err_resync_range_unavailable_rate",
            server.resync_range_unavailable,
            server.stream_opens,
            policy.max_resync_error_rate,
            "stream opens answered ERR_RESYNC_RANGE_UNAVAILABLE",
        ),
        (
            "err_resync_throttled_rate",
            server.resync_throttled,
            server.stream_opens,
            policy.max_resync_error_rate,
            "stream opens answered ERR_RESYNC_THROTTLED",
        ),
        (
            "send_stall_rate",
            server.send_stalls,
            server.sends,
            policy.max_send_stall_rate,
            "sends failed or slower than PARLEY_RELEASE_SEND_STALL_MS",
        ),
    ]
    checks = []
    for name, count, total, limit, per in rows:
        rate = count / total if total else 0.0
        detail = f"{count} of {total} {per} = {_fmt(rate)} (threshold {_fmt(limit)})"
        # Deployment-wide: both cohorts share these, so a breach holds rather than rolls back.
        checks.append(Check("p1", name, rate <= limit, rate, limit, detail, attributable=False))
    return checks


def _p1_notification_checks(outcomes: dict[str, dict[str, int]], policy: GatePolicy) -> list[Check]:
    """Seed 000: the notification drop rate (dropped / attempted) below 1 % on every channel.

    A channel that sent nothing in the window passes: there is nothing to judge.
    """
    checks = []
    for channel in sorted(outcomes):
        sent = outcomes[channel].get("sent", 0)
        dropped = outcomes[channel].get("dead", 0)
        attempted = sent + dropped
        if not attempted:
            continue
        rate = dropped / attempted
        limit = policy.max_notification_drop_rate
        detail = f"{dropped} of {attempted} dropped = {_fmt(rate)} (threshold {_fmt(limit)})"
        # Deployment-wide like the server counts: a breach holds rather than rolls back.
        checks.append(
            Check(
                "p1",
                f"notification_drop_rate_{channel}",
                rate < limit,
                rate,
                limit,
                detail,
                attributable=False,
            )
        )
    return checks


def _rollout_checks(
    state: RolloutState, policy: GatePolicy, now: datetime, observation: Observation | None
) -> tuple[list[Check], list[str]]:
    kill = Check(
        gate="rollout",
        name="kill_switch",
        ok=not state.killed,
        value="on" if state.killed else "off",
        threshold="off",
        detail=f"on since {_iso(state.changed_at)}: {state.reason}" if state.killed else "off",
    )
    needed = policy.dwell.get(state.stage)
    dwelt = now - state.stage_since
    if needed is None:
        dwell = Check("rollout", "dwell", True, _span(dwelt), None, f"no minimum at {state.stage}")
    else:
        dwell = Check(
            gate="rollout",
            name="dwell",
            ok=dwelt >= needed,
            value=_span(dwelt),
            threshold=_span(needed),
            detail=(
                f"{_stage_name(state.stage)} must run {_wait(needed - dwelt)} more before "
                f"promotion ({_span(dwelt)} of {_span(needed)} in {state.stage})"
                if dwelt < needed
                else f"{_span(dwelt)} of {_span(needed)} in {state.stage}"
            ),
        )
    checks, warnings = [kill, dwell], []
    longest = policy.max_stage.get(state.stage)
    if longest is not None:
        over = dwelt >= longest
        detail = f"{_span(dwelt)} in {state.stage}, at most {_span(longest)}"
        if over:
            detail += ": past its maximum; promote with --override after a look, hold or kill"
        elif dwelt >= longest * STAGE_WARN_SHARE:
            warnings.append(
                f"stage_time: {state.stage} has run {_span(dwelt)} of its {_span(longest)} "
                "maximum: promote or hold soon (past it the gates HOLD)"
            )
        checks.append(
            Check("rollout", "stage_time", not over, _span(dwelt), _span(longest), detail)
        )
    if state.stage is Stage.FULL:
        checks.append(_observation_check(state, policy, now, observation))
    return checks, warnings


def _observation_check(
    state: RolloutState, policy: GatePolicy, now: datetime, observation: Observation | None
) -> Check:
    """Seed 004 §10: done when `full` ran the whole window with no P0 breach or failed P1."""
    observed, needed = now - state.stage_since, policy.observe_full
    value, threshold = _span(observed), _span(needed)
    if observation is not None and (observation.p0_ok is False or observation.p1_ok is False):
        detail = "not done: in the observation window " + "; ".join(observation.reasons)
        return Check("rollout", "observation", False, value, threshold, detail)
    if observed < needed:
        detail = f"observing full: {value} of {threshold}, no P0 breach or failed P1 so far"
        return Check("rollout", "observation", None, value, threshold, detail)
    return Check("rollout", "observation", True, value, threshold, f"done: {value} at full, clean")


def _server_summary(server: ServerSampleRow) -> dict[str, Any]:
    return {
        "requests": server.requests,
        "errors_5xx": server.errors_5xx,
        "stream_opens": server.stream_opens,
        "ERR_RESYNC_RANGE_UNAVAILABLE": server.resync_range_unavailable,
        "ERR_RESYNC_THROTTLED": server.resync_throttled,
        "sends": server.sends,
        "send_stalls": server.send_stalls,
    }


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _span(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _stage_name(stage: Stage) -> str:
    """`canary_1` → "Canary 1": how a person says the stage."""
    return stage.value.replace("_", " ").capitalize()


def _wait(delta: timedelta) -> str:
    """How long is left, rounded up to a whole minute past the first one: "29 min", "1 h 5 min"."""
    seconds = max(1, int(delta.total_seconds() + 0.999))
    if seconds < 60:
        return f"{seconds} s"
    minutes = -(-seconds // 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
