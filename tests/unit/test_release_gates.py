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
from parley.features.release.gates import GatePolicy, MetricWindow, evaluate_gates
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
    assert result.gate_p1_ok is None
    assert result.reasons == [
        "not enough messages yet: canary has 10 of 20 messages and 1 of 3 sessions"
    ]


def test_dwell_time_not_met_holds_with_the_time_so_far() -> None:
    result = gates(state(Stage.CANARY_10, dwelt=timedelta(minutes=35)), window(BOTH))

    assert result.gate_rollout_ok is False
    assert result.rollout_decision is Decision.HOLD
    assert result.reasons == ["dwell: 35m00s of 2h00m in canary_10"]


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
