"""Voice and video calls: the call state machine and what a call record says.

A call is one caller and one callee inside a conversation both belong to (a direct
conversation, or a room/group where the caller names whom to call). Parley relays the WebRTC
signalling (offer, answer, ICE candidates) and keeps the state; media flows between the browsers,
directly or through TURN.

    RINGING ──answer──▶ ACTIVE ──hangup──▶ ENDED (hangup)
       │
       ├─reject / busy / caller hangs up──▶ ENDED (rejected | busy | cancelled)
       └─nobody answers in time──────────▶ MISSED (timeout)

Each device (a browser tab, an app install: the client names it) takes part in one ringing or
active call at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from parley.core.errors import Conflict, ErrorCode


class CallState(StrEnum):
    RINGING = "ringing"
    ACTIVE = "active"
    ENDED = "ended"
    MISSED = "missed"

    @property
    def live(self) -> bool:
        return self in (CallState.RINGING, CallState.ACTIVE)


class EndReason(StrEnum):
    HANGUP = "hangup"  # an active call ended by either side
    CANCELLED = "cancelled"  # the caller gave up while it rang
    REJECTED = "rejected"  # the callee declined
    BUSY = "busy"  # the callee's device is in another call
    TIMEOUT = "timeout"  # nobody answered in time (state MISSED)


class CallAction(StrEnum):
    """What a party does to a call: each is also the name of its frame and event (`call.<x>`)."""

    ANSWER = "answer"
    ICE = "ice"
    REJECT = "reject"
    BUSY = "busy"
    HANGUP = "hangup"


class Media(StrEnum):
    AUDIO = "audio"
    VIDEO = "video"


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    conversation_id: int
    caller_id: int
    caller_device: str
    callee_id: int
    # The device that answered; None while it rings (every device of the callee rings).
    callee_device: str | None
    media: Media
    state: CallState
    end_reason: EndReason | None
    created_at: datetime
    ring_deadline: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    offer_sdp: str
    answer_sdp: str | None
    # The ICE candidates each side sent (bounded), so a device that (re)connects while the call
    # rings or goes on still gets its peer's.
    caller_candidates: list[dict[str, Any]]
    callee_candidates: list[dict[str, Any]]

    def party(self, user_id: int) -> bool:
        return user_id in (self.caller_id, self.callee_id)

    def peer_of(self, user_id: int) -> int:
        return self.callee_id if user_id == self.caller_id else self.caller_id

    @property
    def duration_seconds(self) -> int | None:
        if self.answered_at is None or self.ended_at is None:
            return None
        return max(0, round((self.ended_at - self.answered_at).total_seconds()))

    def public(self) -> dict[str, Any]:
        """The call as its parties see it in events and over REST (no SDP, no candidates)."""
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "caller_id": self.caller_id,
            "caller_device": self.caller_device,
            "callee_id": self.callee_id,
            "callee_device": self.callee_device,
            "media": self.media.value,
            "state": self.state.value,
            "end_reason": self.end_reason.value if self.end_reason else None,
            "created_at": _iso(self.created_at),
            "ring_deadline": _iso(self.ring_deadline),
            "answered_at": _iso(self.answered_at),
            "ended_at": _iso(self.ended_at),
            "duration_seconds": self.duration_seconds,
        }


@dataclass(frozen=True, slots=True)
class Transition:
    """Where an action takes a call: the states it may start from, and the outcome."""

    allowed_from: tuple[CallState, ...]
    to: CallState
    reason: EndReason | None


def transition_for(action: CallAction, *, by_caller: bool, state: CallState) -> Transition:
    """The transition `action` makes from `state`; an illegal one raises 409.

    Only the callee answers, rejects or says busy; either side hangs up (the caller's hangup of
    a ringing call is a cancel). ICE candidates flow in a live call and change nothing.
    """
    if action is CallAction.ICE:
        rule = Transition((CallState.RINGING, CallState.ACTIVE), state, None)
    elif action is CallAction.HANGUP:
        if state is CallState.RINGING:
            reason = EndReason.CANCELLED if by_caller else EndReason.REJECTED
            rule = Transition((CallState.RINGING,), CallState.ENDED, reason)
        else:
            rule = Transition((CallState.ACTIVE,), CallState.ENDED, EndReason.HANGUP)
    elif by_caller:
        raise Conflict(f"the caller cannot {action.value} their own call", ErrorCode.CALL_STATE)
    elif action is CallAction.ANSWER:
        rule = Transition((CallState.RINGING,), CallState.ACTIVE, None)
    elif action is CallAction.REJECT:
        rule = Transition((CallState.RINGING,), CallState.ENDED, EndReason.REJECTED)
    else:
        rule = Transition((CallState.RINGING,), CallState.ENDED, EndReason.BUSY)
    if state not in rule.allowed_from:
        code = ErrorCode.CALL_ENDED if not state.live else ErrorCode.CALL_STATE
        raise Conflict(f"cannot {action.value} a call that is {state.value}", code)
    return rule


def record_text(call: Call) -> str:
    """The timeline line a client without call support shows for a finished call."""
    kind = "Video call" if call.media is Media.VIDEO else "Call"
    if call.state is CallState.MISSED:
        return f"📞 Missed {kind.lower()}"
    if call.end_reason is EndReason.REJECTED:
        return f"📞 {kind} declined"
    if call.end_reason is EndReason.BUSY:
        return f"📞 {kind} not answered (busy)"
    if call.end_reason is EndReason.CANCELLED:
        return f"📞 {kind} cancelled"
    seconds = call.duration_seconds or 0
    return f"📞 {kind} · {seconds // 60}:{seconds % 60:02d}"


def record_metadata(call: Call) -> dict[str, Any]:
    """What the timeline record of a call carries under the reserved metadata key `call`."""
    return {
        "call": {
            "id": call.id,
            "state": call.state.value,
            "end_reason": call.end_reason.value if call.end_reason else None,
            "media": call.media.value,
            "caller_id": call.caller_id,
            "callee_id": call.callee_id,
            "duration_seconds": call.duration_seconds,
        }
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
