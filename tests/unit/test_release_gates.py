"""Release gates from injected metric windows, the U test, and the stage machine (pure)."""

from __future__ import annotations

import dataclasses
import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.core.errors import Conflict
from parley.core.rollout import Action, Decision, RolloutState, Stage, check_transition
from parley.core.rollout import target_stage as target
from parley.features.release.gates import GatePolicy, MetricWindow, Observation, evaluate_gates
from parley.features.release.stats import mann_whitney_u, percentile
from parley.storage.release import ClientReportRow, ServerSampleRow

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
POLICY = GatePolicy(
    dwell={
        Stage.CANARY_1: timedelta(minutes=30),
        Stage.CANARY_10: timedelta(hours=2),
        Stage.CANARY_50: timedelta(hours=12),
    },
    window=timedelta(hours=1),
    max_stage={
        Stage.CANARY_1: timedelta(hours=1),
        Stage.CANARY_10: timedelta(hours=4),
        Stage.CANARY_50: timedelta(hours=24),
    },
    observe_full=timedelta(hours=24),
    min_messages=20,
    min_sessions=3,
)
_ids = itertools.count(1)


def state(stage: Stage = Stage.CANARY_10, *, dwelt: timedelta = timedelta(hours=3), **kw: object):
    fields: dict[str, object] = {
        "release": "chat_full_release",
        "stage": stage,
        "killed": False,
        "reason": "promote",
        "actor": "ops",
        "changed_at": NOW - dwelt,
        "stage_since": NOW - dwelt,
    }
    fields.update(kw)
    return RolloutState(**fields)  # type: ignore[arg-type]


def report(cohort: str, user_id: int, latencies: list[float], **counters: int) -> ClientReportRow:
    return ClientReportRow(
        id=next(_ids),
        at=NOW - timedelta(minutes=5),
        user_id=user_id,
        cohort=cohort,
        transport="ws",
        counters=counters,
        write_receipt_ms=latencies,
    )


def healthy(cohort: str, users: range, latency: float = 40.0) -> list[ClientReportRow]:
    rng = random.Random(f"{cohort}{latency}")
    return [
        report(cohort, user, [latency + rng.uniform(-10, 10) for _ in range(10)]) for user in users
    ]


def window(reports: list[ClientReportRow], **server: int) -> MetricWindow:
    counts = {
        "requests": 1000,
        "errors_5xx": 0,
        "stream_opens": 100,
        "resync_range_unavailable": 0,
        "resync_throttled": 0,
        "sends": 0,
        "send_stalls": 0,
    }
    counts.update(server)
    return MetricWindow(
        start=NOW - timedelta(hours=1),
        end=NOW,
        reports=reports,
        server=ServerSampleRow(at=NOW, node="all", **counts),
    )


def gates(st: RolloutState, w: MetricWindow):
    return evaluate_gates(st, w, POLICY, NOW)


BOTH = healthy("canary", range(1, 6)) + healthy("baseline", range(100, 110))


def test_a_healthy_canary_past_its_dwell_time_may_proceed() -> None:
    result = gates(state(), window(BOTH))

    assert (result.gate_p0_ok, result.gate_p1_ok, result.gate_rollout_ok) == (True, True, True)
    assert result.rollout_decision is Decision.PROCEED
    assert result.reasons == []
    assert result.cohorts["canary"]["messages"] == 50
    assert result.cohorts["canary"]["sessions"] == 5


def test_one_duplicate_in_the_canary_is_a_rollback_naming_the_report() -> None:
    bad = report("canary", 3, [30.0], timeline_duplicate_detected=1)

    result = gates(state(), window([*BOTH, bad]))

    assert result.gate_p0_ok is False
    assert result.rollout_decision is Decision.ROLLBACK
    (reason,) = result.reasons
    assert reason.startswith("timeline_duplicate_detected: 1 (canary 1, baseline 0)")
    assert f"#{bad.id}" in reason


CORROBORATED = dataclasses.replace(POLICY, p0_min_reporters=3)


def test_a_p0_counter_one_user_reports_holds_and_never_rolls_back() -> None:
    forged = [report("canary", 3, [30.0], timeline_duplicate_detected=10**6) for _ in range(50)]

    result = evaluate_gates(state(), window([*BOTH, *forged]), CORROBORATED, NOW)

    assert result.gate_p0_ok is False
    assert result.p0_breached and not result.p0_corroborated
    assert result.rollout_decision is Decision.HOLD
    (reason,) = result.reasons
    assert "by 1 user(s) #3" in reason and "held until corroborated" in reason


def test_a_p0_counter_enough_distinct_users_report_rolls_back() -> None:
    reports = [report("canary", user, [30.0], ack_without_receipt_10s=1) for user in (1, 2, 4)]

    result = evaluate_gates(state(), window([*BOTH, *reports]), CORROBORATED, NOW)

    assert result.p0_corroborated
    assert result.rollout_decision is Decision.ROLLBACK


def test_a_p0_breach_before_the_canary_starts_holds_instead() -> None:
    bad = report("baseline", 3, [30.0], read_rollback_detected=2)

    result = gates(state(Stage.OFF), window([bad]))

    assert result.rollout_decision is Decision.HOLD
    assert "read_rollback_detected: 2" in result.reasons[0]


def test_too_little_data_is_hold_never_a_pass_or_a_fail() -> None:
    few = healthy("canary", range(1, 2)) + healthy("baseline", range(100, 110))

    result = gates(state(), window(few))

    assert result.rollout_decision is Decision.HOLD
    assert (result.gate_p0_ok, result.gate_p1_ok) == (None, None)
    assert result.reasons == [
        "waiting for data (gate_p0_ok, gate_p1_ok): not enough messages yet: canary has 10 of "
        "20 messages and 1 of 3 sessions"
    ]


def test_zero_reports_are_waiting_for_data_never_a_clean_p0() -> None:
    result = gates(state(Stage.OFF), window([]))

    assert result.gate_p0_ok is None
    assert result.rollout_decision is Decision.HOLD
    assert not result.p0_breached
    p0 = [c for c in result.checks if c.gate == "p0"]
    assert all(c.ok is None and "not enough data to call it clean" in c.detail for c in p0)
    assert result.reasons[0].startswith("waiting for data (gate_p0_ok, gate_p1_ok)")
    assert "baseline has 0 of 20 messages and 0 of 3 sessions" in result.reasons[0]


def test_before_the_canary_the_current_version_is_measured_and_may_proceed() -> None:
    result = gates(state(Stage.OFF), window(healthy("baseline", range(100, 104))))

    assert (result.gate_p0_ok, result.gate_p1_ok, result.gate_rollout_ok) == (True, True, True)
    assert result.rollout_decision is Decision.PROCEED


def test_a_stage_near_its_maximum_warns_and_past_it_holds() -> None:
    near = gates(state(Stage.CANARY_1, dwelt=timedelta(minutes=50)), window(BOTH))
    past = gates(state(Stage.CANARY_1, dwelt=timedelta(minutes=65)), window(BOTH))

    assert near.rollout_decision is Decision.PROCEED
    assert near.warnings == [
        "stage_time: canary_1 has run 50m00s of its 1h00m maximum: promote or hold soon "
        "(past it the gates HOLD)"
    ]
    assert past.rollout_decision is Decision.HOLD
    assert past.gate_rollout_ok is False
    assert past.reasons == [
        "stage_time: 1h05m in canary_1, at most 1h00m: past its maximum; promote with "
        "--override after a look, hold or kill"
    ]


def test_a_send_stall_is_a_p1_failure_that_holds() -> None:
    result = gates(state(), window(BOTH, sends=200, send_stalls=30))

    check = next(c for c in result.checks if c.name == "send_stall_rate")
    assert check.ok is False and check.gate == "p1"
    assert result.rollout_decision is Decision.HOLD  # deployment-wide, not the canary's doing
    assert result.reasons == [
        "send_stall_rate: 30 of 200 sends failed or slower than PARLEY_RELEASE_SEND_STALL_MS "
        "= 0.15 (threshold 0.01)"
    ]


def test_full_is_done_only_after_a_clean_observation_window() -> None:
    canary = healthy("canary", range(1, 6))
    clean = Observation(since=NOW, p0_ok=True, p1_ok=True, reasons=[])
    dirty = Observation(since=NOW, p0_ok=False, p1_ok=True, reasons=["P0 report #7"])

    observing = gates(state(Stage.FULL, dwelt=timedelta(hours=5)), window(canary))
    done = evaluate_gates(
        state(Stage.FULL, dwelt=timedelta(hours=25)), window(canary), POLICY, NOW, clean
    )
    spoiled = evaluate_gates(
        state(Stage.FULL, dwelt=timedelta(hours=25)), window(canary), POLICY, NOW, dirty
    )

    assert observing.rollout_decision is Decision.HOLD and not observing.rollout_done
    assert "observation waiting: observing full: 5h00m of 24h00m" in observing.reasons[0]
    assert done.rollout_done and done.rollout_decision is Decision.PROCEED
    assert not spoiled.rollout_done
    assert spoiled.reasons == ["observation: not done: in the observation window P0 report #7"]


def test_dwell_time_not_met_holds_saying_how_long_to_wait() -> None:
    result = gates(state(Stage.CANARY_10, dwelt=timedelta(minutes=35)), window(BOTH))

    assert result.gate_rollout_ok is False
    assert result.rollout_decision is Decision.HOLD
    assert result.reasons == [
        "dwell: Canary 10 must run 1 h 25 min more before promotion (35m00s of 2h00m in canary_10)"
    ]


def test_a_dwell_nearly_done_rounds_the_wait_up_to_whole_minutes() -> None:
    dwelt = timedelta(minutes=1, seconds=1)
    result = gates(state(Stage.CANARY_1, dwelt=dwelt), window(BOTH))

    (dwell,) = [c for c in result.checks if c.name == "dwell"]
    assert dwell.detail.startswith("Canary 1 must run 29 min more before promotion")


def test_kill_switch_on_holds() -> None:
    result = gates(state(Stage.CANARY_1, killed=True, reason="kill switch enabled"), window(BOTH))

    assert result.gate_rollout_ok is False
    assert result.rollout_decision is Decision.HOLD
    assert any(r.startswith("kill_switch: on since") for r in result.reasons)


def test_slow_write_receipts_in_the_canary_only_roll_back() -> None:
    slow = healthy("canary", range(1, 6), latency=1500.0) + healthy("baseline", range(100, 110))

    result = gates(state(), window(slow))

    assert result.gate_p1_ok is False
    assert result.rollout_decision is Decision.ROLLBACK
    (reason,) = result.reasons
    assert reason.startswith("write_receipt_p95_ms: ")
    assert "above the threshold 1000" in reason
    assert "canary worse than baseline (Mann-Whitney p=" in reason


def test_a_regression_the_baseline_shares_holds_rather_than_rolls_back() -> None:
    slow = healthy("canary", range(1, 6), latency=1500.0)
    slow += healthy("baseline", range(100, 110), latency=1500.0)

    result = gates(state(), window(slow))

    assert result.rollout_decision is Decision.HOLD
    assert "the baseline is at" in result.reasons[0]


def test_a_canary_measurably_worse_than_baseline_fails_even_under_the_threshold() -> None:
    worse = healthy("canary", range(1, 6), latency=300.0) + healthy("baseline", range(100, 110))

    result = gates(state(), window(worse))

    check = next(c for c in result.checks if c.name == "write_receipt_p95_ms")
    assert check.ok is False
    assert result.rollout_decision is Decision.ROLLBACK
    assert "above the threshold" not in check.detail


def test_forced_resyncs_and_server_errors_are_p1() -> None:
    resyncing = [report("canary", u, [40.0] * 10, forced_resyncs=1) for u in range(1, 6)]
    resyncing += healthy("baseline", range(100, 110))

    result = gates(state(), window(resyncing, errors_5xx=50, resync_throttled=20))

    failed = {c.name for c in result.checks if c.ok is False}
    assert failed == {"forced_resync_rate", "error_5xx_rate", "err_resync_throttled_rate"}
    assert result.rollout_decision is Decision.ROLLBACK
    assert any("50 of 1000 requests" in r for r in result.reasons)
    assert any("20 of 100 stream opens answered ERR_RESYNC_THROTTLED" in r for r in result.reasons)


def test_the_snapshot_is_plain_json_with_every_value() -> None:
    snapshot = gates(state(), window(BOTH)).snapshot()

    assert snapshot["rollout_decision"] == "PROCEED"
    assert snapshot["stage"] == "canary_10"
    assert {c["name"] for c in snapshot["checks"]} >= {
        "ack_without_receipt_10s",
        "timeline_duplicate_detected",
        "read_rollback_detected",
        "write_receipt_p95_ms",
        "forced_resync_rate",
        "full_state_rate",
        "error_5xx_rate",
        "err_resync_range_unavailable_rate",
        "err_resync_throttled_rate",
        "kill_switch",
        "dwell",
        "stage_time",
        "send_stall_rate",
    }


def test_mann_whitney_matches_the_textbook_example() -> None:
    test = mann_whitney_u([19, 22, 16, 29, 24], [20, 11, 17, 12])

    assert test.u == 17
    assert test.p_two_sided == pytest.approx(0.1113, abs=1e-4)


def test_mann_whitney_with_everything_tied_sees_no_difference() -> None:
    assert mann_whitney_u([0, 0, 0], [0, 0]).p_greater == 0.5


def test_nearest_rank_percentile() -> None:
    assert percentile(list(range(1, 101)), 0.95) == 95
    assert percentile([], 0.95) is None


@given(stage=st.sampled_from(Stage), action=st.sampled_from(Action))
def test_every_action_either_lands_on_a_legal_stage_or_is_refused(
    stage: Stage, action: Action
) -> None:
    try:
        to = target(action, stage)
    except Conflict:
        assert (action, stage) in {
            (Action.PROMOTE, Stage.FULL),
            (Action.HOLD, Stage.OFF),
            (Action.KILL, Stage.OFF),
        }
        return
    check_transition(stage, to)


def test_stages_cannot_be_skipped() -> None:
    with pytest.raises(Conflict):
        check_transition(Stage.CANARY_1, Stage.CANARY_50)
    with pytest.raises(Conflict):
        check_transition(Stage.OFF, Stage.FULL)
    assert [s.percentage for s in Stage] == [0, 1, 10, 50, 100]


def test_overdue_disputes_and_a_moderation_backlog_hold_a_healthy_canary() -> None:
    from dataclasses import replace

    from parley.features.release.gates import SafetyCounts

    calm = replace(window(BOTH), safety=SafetyCounts(overdue_disputes=0, moderation_backlog=100))
    late = replace(window(BOTH), safety=SafetyCounts(overdue_disputes=2, moderation_backlog=101))

    assert gates(state(), calm).rollout_decision is Decision.PROCEED
    result = gates(state(), late)
    assert result.gate_p1_ok is False
    # Not the release's doing: HOLD, never a rollback.
    assert result.rollout_decision is Decision.HOLD
    assert result.reasons == [
        "overdue_disputes: 2 active disputes past their SLA deadline (threshold 0)",
        "moderation_backlog: 101 open moderation queue items (reports and held messages) "
        "(threshold 100)",
    ]


def test_notification_drop_rate_above_one_percent_fails_p1_and_none_sent_passes() -> None:
    from parley.features.release.gates import _p1_notification_checks

    policy = GatePolicy(dwell={}, window=timedelta(hours=1))
    [bad, good] = _p1_notification_checks(
        {"email": {"sent": 98, "dead": 2}, "push": {"sent": 995, "dead": 4, "expired": 50}},
        policy,
    )
    assert (bad.name, bad.ok, bad.value, bad.attributable) == (
        "notification_drop_rate_email",
        False,
        0.02,
        False,
    )
    assert good.ok is True and good.value == 4 / 999
    assert _p1_notification_checks({"telegram": {"expired": 3}}, policy) == []
