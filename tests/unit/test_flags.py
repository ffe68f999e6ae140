"""Flag evaluation and Unleash-compatible bucketing (pure; property tests for stickiness)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.core.flags import Flag, FlagContext, Reason, Stickiness, bucket, evaluate

keys = st.text(min_size=1, max_size=40)
groups = st.text(min_size=1, max_size=40)
percents = st.integers(min_value=0, max_value=100)


@pytest.mark.parametrize(
    ("key", "group", "expected"),
    [("123", "gr1", 73), ("999", "groupX", 25)],
)
def test_bucketing_matches_the_unleash_cross_sdk_vectors(
    key: str, group: str, expected: int
) -> None:
    assert bucket(key, group) == expected


@given(key=keys, group=groups)
def test_a_bucket_is_between_1_and_100(key: str, group: str) -> None:
    assert 1 <= bucket(key, group) <= 100


@given(key=keys, group=groups, low=percents, high=percents)
def test_raising_the_percentage_never_removes_anyone(
    key: str, group: str, low: int, high: int
) -> None:
    low, high = sorted((low, high))
    flag = Flag(key="f", enabled=True, percentage=low, group=group, stickiness=Stickiness.ROOM)
    context = FlagContext(keys={"room": key})
    if evaluate(flag, context).value:
        assert evaluate(flag.with_changes(percentage=high), context).value


@given(user_id=st.integers(min_value=1, max_value=10**12), percent=percents)
def test_the_same_user_always_gets_the_same_answer(user_id: int, percent: int) -> None:
    flag = Flag(key="chat_full_release", enabled=True, percentage=percent)
    context = FlagContext(user_id=user_id)
    assert evaluate(flag, context) == evaluate(flag, context)


@settings(max_examples=20)
@given(group=groups)
def test_buckets_are_roughly_uniform(group: str) -> None:
    counts = Counter(bucket(str(user_id), group) for user_id in range(20_000))
    # 200 expected per bucket; a fair hash stays well within ±50 % for every one of them.
    assert set(counts) == set(range(1, 101))
    assert min(counts.values()) > 100
    assert max(counts.values()) < 300


@settings(max_examples=20)
@given(percent=percents, group=groups)
def test_a_percentage_takes_about_that_share_of_keys(percent: int, group: str) -> None:
    flag = Flag(key="f", enabled=True, percentage=percent, group=group)
    share = sum(evaluate(flag, FlagContext(user_id=i)).value for i in range(10_000)) / 10_000
    assert abs(share - percent / 100) < 0.03


def test_rules_apply_in_order() -> None:
    off = Flag(key="f", enabled=False, allow_users=frozenset({7}))
    assert evaluate(off, FlagContext(user_id=7)).reason is Reason.OFF

    dark = Flag(key="chat_dark_launch", enabled=True, internal_only=True)
    assert evaluate(dark, FlagContext(user_id=1, internal=True)).value
    assert evaluate(dark, FlagContext(user_id=1)).reason is Reason.INTERNAL_ONLY

    disputes = Flag(key="dispute_tools_v2", enabled=True, roles=frozenset({"dispute_ops"}))
    assert evaluate(disputes, FlagContext(user_id=1, role="dispute_ops")).value
    assert evaluate(disputes, FlagContext(user_id=1, role="member")).reason is Reason.ROLE
    allowed = disputes.with_changes(allow_users=frozenset({5}))
    assert evaluate(allowed, FlagContext(user_id=5, role="member")).reason is Reason.ALLOW_LIST


def test_percentage_by_contract_needs_a_contract_and_honours_allowed_keys() -> None:
    beta = Flag(
        key="chat_notifications_beta",
        enabled=True,
        percentage=5,
        stickiness=Stickiness.CONTRACT,
        allow_keys=frozenset({"c-42"}),
    )
    assert evaluate(beta, FlagContext(user_id=1)).reason is Reason.NO_KEY
    assert evaluate(beta, FlagContext(user_id=1, keys={"contract": "c-42"})).value
    inside = next(str(i) for i in range(1000) if bucket(str(i), "chat_notifications_beta") <= 5)
    outside = next(str(i) for i in range(1000) if bucket(str(i), "chat_notifications_beta") > 5)
    assert evaluate(beta, FlagContext(keys={"contract": inside})).reason is Reason.PERCENTAGE
    assert (
        evaluate(beta, FlagContext(keys={"contract": outside})).reason is Reason.OUTSIDE_PERCENTAGE
    )
