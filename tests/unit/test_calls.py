"""The call state machine, call records, TURN credentials, call event envelopes, and the SSO
helpers that need no provider (where a sign-in may return to, role mapping)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from parley.core.calls import (
    Call,
    CallAction,
    CallState,
    EndReason,
    Media,
    record_metadata,
    record_text,
    transition_for,
)
from parley.core.errors import BadInput, Conflict
from parley.core.events import CallEvent
from parley.core.models import Role
from parley.features.calls.turn import turn_credentials
from parley.features.sso.service import check_next, mapped_role
from parley.realtime.envelope import envelope_for
from parley.settings import SsoProvider

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CALL = Call(
    id="c-12345678",
    conversation_id=3,
    caller_id=1,
    caller_device="tab",
    callee_id=2,
    callee_device=None,
    media=Media.AUDIO,
    state=CallState.RINGING,
    end_reason=None,
    created_at=T0,
    ring_deadline=T0 + timedelta(seconds=45),
    answered_at=None,
    ended_at=None,
    offer_sdp="v=0",
    answer_sdp=None,
    caller_candidates=[],
    callee_candidates=[],
)


@pytest.mark.parametrize(
    ("action", "by_caller", "state", "to", "reason"),
    [
        (CallAction.ANSWER, False, CallState.RINGING, CallState.ACTIVE, None),
        (CallAction.REJECT, False, CallState.RINGING, CallState.ENDED, EndReason.REJECTED),
        (CallAction.BUSY, False, CallState.RINGING, CallState.ENDED, EndReason.BUSY),
        (CallAction.HANGUP, True, CallState.RINGING, CallState.ENDED, EndReason.CANCELLED),
        (CallAction.HANGUP, False, CallState.RINGING, CallState.ENDED, EndReason.REJECTED),
        (CallAction.HANGUP, True, CallState.ACTIVE, CallState.ENDED, EndReason.HANGUP),
        (CallAction.HANGUP, False, CallState.ACTIVE, CallState.ENDED, EndReason.HANGUP),
        (CallAction.ICE, True, CallState.RINGING, CallState.RINGING, None),
        (CallAction.ICE, False, CallState.ACTIVE, CallState.ACTIVE, None),
    ],
)
def test_legal_transitions(
    action: CallAction, by_caller: bool, state: CallState, to: CallState, reason: EndReason | None
) -> None:
    rule = transition_for(action, by_caller=by_caller, state=state)

    assert (rule.to, rule.reason) == (to, reason)
    assert state in rule.allowed_from


@pytest.mark.parametrize("action", list(CallAction))
@pytest.mark.parametrize("state", [CallState.ENDED, CallState.MISSED])
def test_a_finished_call_refuses_everything(action: CallAction, state: CallState) -> None:
    with pytest.raises(Conflict) as refused:
        transition_for(action, by_caller=False, state=state)

    assert refused.value.code == "ERR_CALL_ENDED"


@pytest.mark.parametrize("action", [CallAction.ANSWER, CallAction.REJECT, CallAction.BUSY])
def test_only_the_callee_answers_rejects_or_is_busy(action: CallAction) -> None:
    with pytest.raises(Conflict) as refused:
        transition_for(action, by_caller=True, state=CallState.RINGING)
    with pytest.raises(Conflict) as active:
        transition_for(action, by_caller=False, state=CallState.ACTIVE)

    assert refused.value.code == active.value.code == "ERR_CALL_STATE"


def test_records_say_what_happened_in_words_and_in_metadata() -> None:
    answered = replace(
        CALL,
        state=CallState.ENDED,
        end_reason=EndReason.HANGUP,
        answered_at=T0,
        ended_at=T0 + timedelta(seconds=83),
    )
    missed = replace(CALL, state=CallState.MISSED, end_reason=EndReason.TIMEOUT, ended_at=T0)
    video_declined = replace(
        CALL, media=Media.VIDEO, state=CallState.ENDED, end_reason=EndReason.REJECTED
    )

    assert record_text(answered) == "📞 Call · 1:23"
    assert record_text(missed) == "📞 Missed call"
    assert record_text(video_declined) == "📞 Video call declined"
    assert record_metadata(answered)["call"] == {
        "id": "c-12345678",
        "state": "ended",
        "end_reason": "hangup",
        "media": "audio",
        "caller_id": 1,
        "callee_id": 2,
        "duration_seconds": 83,
    }
    assert "offer_sdp" not in json.dumps(CALL.public()) and "v=0" not in json.dumps(CALL.public())


def test_turn_credentials_follow_the_turn_rest_api() -> None:
    username, password = turn_credentials("s3cret", 42, 1_767_225_600)

    assert username == "1767225600:42"
    digest = hmac.new(b"s3cret", b"1767225600:42", hashlib.sha1).digest()
    assert password == base64.b64encode(digest).decode()
    assert turn_credentials("other", 42, 1_767_225_600)[1] != password


def test_a_call_event_goes_to_its_two_parties_only() -> None:
    event = CallEvent(type="call.offer", call=CALL.public(), sdp="v=0", audience=[1, 2])

    envelope = envelope_for(event)

    assert envelope.user_ids == (1, 2) and envelope.conversation_ids == ()
    assert not envelope.broadcast
    assert "audience" not in json.loads(envelope.data)


@pytest.mark.parametrize("path", ["/", "/calls", "/calls?relay=1", "/a/b.c~d"])
def test_a_sign_in_may_return_to_a_path_here(path: str) -> None:
    assert check_next(path) == path
    assert check_next(None) == "/"


@pytest.mark.parametrize(
    "path",
    ["//evil.example", "https://evil.example/", "/\\evil.example", "calls", "/x y", "/\x00"],
)
def test_a_sign_in_may_not_return_elsewhere(path: str) -> None:
    with pytest.raises(BadInput):
        check_next(path)


def test_the_strongest_mapped_role_wins() -> None:
    provider = SsoProvider(
        name="corp",
        issuer="https://id.example",
        client_id="p",
        role_claim="groups",
        roles={"support": "operator", "admins": "admin"},
        default_role="member",
    )

    assert mapped_role(provider, {"groups": ["support", "admins"]}) is Role.ADMIN
    assert mapped_role(provider, {"groups": "support"}) is Role.OPERATOR
    assert mapped_role(provider, {"groups": ["staff"]}) is Role.MEMBER
    assert mapped_role(provider, {}) is Role.MEMBER
