"""Call signals as clients send them, over REST or as WebSocket frames: one schema, one limit
set and one set of error codes either way."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from parley.core.inputs import Input, Text
from parley.core.limits import SEQ_MAX

# Client-made ids: a call id (like a client_msg_id, it makes a retried offer the same call) and
# the device (tab, app install) that takes part, which a client keeps across reconnects.
CallId = Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
DeviceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
# A session description: a few kB for audio and video; 64 KiB leaves room and bounds abuse.
SDP_MAX_CHARS = 64 * 1024
Sdp = Text(SDP_MAX_CHARS, min_length=1)
UserId = Annotated[int, Field(ge=1, le=SEQ_MAX)]
CANDIDATES_KEPT = 64  # per side of a call, replayed to a device that reconnects


class Candidate(Input):
    """An RTCIceCandidate as `toJSON()` gives it; an empty `candidate` ends the gathering."""

    candidate: Text(1024)  # type: ignore[valid-type]
    sdpMid: Text(64) | None = None  # type: ignore[valid-type]
    sdpMLineIndex: Annotated[int, Field(ge=0, le=1024)] | None = None
    usernameFragment: Text(256) | None = None  # type: ignore[valid-type]


class OfferIn(Input):
    call_id: CallId
    device_id: DeviceId
    sdp: Sdp  # type: ignore[valid-type]
    media: Literal["audio", "video"] = "audio"
    # Whom to call: required in a group or room, implied in a direct conversation.
    to_user_id: UserId | None = None


class AnswerIn(Input):
    device_id: DeviceId
    sdp: Sdp  # type: ignore[valid-type]


class IceIn(Input):
    device_id: DeviceId
    candidate: Candidate


class EndIn(Input):
    """reject, busy and hangup carry only the device."""

    device_id: DeviceId


Ref = Annotated[str, Field(min_length=1, max_length=128)]
ConversationId = Annotated[int, Field(ge=1, le=SEQ_MAX)]


class OfferFrame(OfferIn):
    type: Literal["call.offer"]
    ref: Ref | None = None
    conversation_id: ConversationId


class AnswerFrame(AnswerIn):
    type: Literal["call.answer"]
    ref: Ref | None = None
    call_id: CallId


class IceFrame(IceIn):
    type: Literal["call.ice"]
    ref: Ref | None = None
    call_id: CallId


class EndFrame(EndIn):
    type: Literal["call.reject", "call.busy", "call.hangup"]
    ref: Ref | None = None
    call_id: CallId
