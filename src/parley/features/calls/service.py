"""Calls: place, answer, relay ICE, end; sweep unanswered calls; write the timeline records.

Signals go out as `CallEvent`s through the stream service to both parties' streams on every node
(Redis bus); state lives in the database (CallStore), so any node can act on any call and the
ring timeout survives restarts. Routes and the WebSocket frames call the `do_*` actions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from parley import metrics
from parley.core.calls import (
    Call,
    CallAction,
    CallState,
    Media,
    record_metadata,
    record_text,
    transition_for,
)
from parley.core.errors import BadInput, Conflict, ErrorCode, NotFound, ParleyError
from parley.core.events import CallAckEvent, CallEvent, Event
from parley.core.models import ConversationKind, User
from parley.features.calls.inputs import (
    CANDIDATES_KEPT,
    AnswerFrame,
    AnswerIn,
    EndFrame,
    EndIn,
    IceFrame,
    IceIn,
    OfferFrame,
    OfferIn,
)
from parley.features.calls.turn import ice_config
from parley.services.timeline import Timeline
from parley.settings import Settings
from parley.storage.calls import CallStore
from parley.transports.frames import parse_frame

log = logging.getLogger(__name__)

Publish = Callable[[Event], Awaitable[None]]
# A record not written within this long after its call ended is a node that stopped in between;
# the sweeper writes it then (the write is idempotent, so a slow first writer is harmless).
RECORD_GRACE_SECONDS = 5.0


class Calls:
    def __init__(
        self, *, settings: Settings, store: CallStore, timeline: Timeline, publish: Publish
    ) -> None:
        self.settings = settings
        self.store = store
        self.timeline = timeline
        self.publish = publish
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle (the server's nodes; the CLI never starts it) -----------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="calls-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)

    # -- reading -----------------------------------------------------------------------------------

    def config(self, user: User) -> dict[str, Any]:
        return ice_config(self.settings, user.id, time.time())

    async def access_call(self, user: User, call_id: str) -> Call:
        """The call if `user` is one of its parties; 404 otherwise, whether it exists or not."""
        call = await self.store.get_call(call_id)
        if call is None or not call.party(user.id):
            raise NotFound("no such call", ErrorCode.NOT_FOUND)
        return call

    async def list_calls(self, user: User, *, live: bool, limit: int = 50) -> list[Call]:
        return await self.store.list_calls(user_id=user.id, live=live, limit=limit)

    # -- actions -----------------------------------------------------------------------------------

    async def do_offer(self, user: User, conversation_id: int, offer: OfferIn) -> tuple[Call, bool]:
        """Ring the callee's devices; `(call, False)` for a retry of an offer already stored."""
        access = await self.timeline.access_conversation(user, conversation_id)
        callee_id = await self._callee(user, access.conversation.kind, conversation_id, offer)
        now = datetime.now(UTC)
        call, created = await self.store.create_call(
            call_id=offer.call_id,
            conversation_id=conversation_id,
            caller_id=user.id,
            caller_device=offer.device_id,
            callee_id=callee_id,
            media=Media(offer.media),
            offer_sdp=offer.sdp,
            created_at=now,
            ring_deadline=now + timedelta(seconds=self.settings.calls_ring_seconds),
        )
        if not created:
            if call.caller_id != user.id or call.conversation_id != conversation_id:
                raise Conflict("that call id is taken; make a new one", ErrorCode.CONFLICT)
            return call, False
        metrics.CALLS_STARTED.inc()
        await self._signal("call.offer", call, user, offer.device_id, sdp=offer.sdp)
        return call, True

    async def _callee(
        self, user: User, kind: ConversationKind, conversation_id: int, offer: OfferIn
    ) -> int:
        members = [
            m.user_id for m in await self.timeline.conversations.list_members(conversation_id)
        ]
        others = [uid for uid in members if uid != user.id]
        if offer.to_user_id is None:
            if kind is not ConversationKind.DIRECT or len(others) != 1:
                raise BadInput("name the member to call (to_user_id) in a group or room")
            return others[0]
        if offer.to_user_id == user.id:
            raise BadInput("you cannot call yourself")
        if offer.to_user_id not in others:
            raise BadInput("to_user_id is not a member of this conversation")
        return offer.to_user_id

    async def do_answer(self, user: User, call_id: str, answer: AnswerIn) -> Call:
        call = await self.access_call(user, call_id)
        if call.state is CallState.ACTIVE and call.callee_device == answer.device_id:
            return call  # a retry of this device's own answer
        rule = transition_for(
            CallAction.ANSWER, by_caller=user.id == call.caller_id, state=call.state
        )
        moved = await self.store.transition(
            call.id,
            from_states=rule.allowed_from,
            to=rule.to,
            end_reason=rule.reason,
            at=datetime.now(UTC),
            answered_by=(user.id, answer.device_id),
            answer_sdp=answer.sdp,
        )
        if moved is None:
            raise await self._lost_race(user, call, CallAction.ANSWER)
        metrics.CALLS_ANSWERED.inc()
        await self._signal("call.answer", moved, user, answer.device_id, sdp=answer.sdp)
        return moved

    async def do_ice(self, user: User, call_id: str, ice: IceIn) -> Call:
        call = await self.access_call(user, call_id)
        transition_for(CallAction.ICE, by_caller=user.id == call.caller_id, state=call.state)
        by_caller = user.id == call.caller_id
        if ice.device_id != (call.caller_device if by_caller else call.callee_device):
            raise Conflict(
                "this device is not in the call (a callee answers before sending candidates)",
                ErrorCode.CALL_STATE,
            )
        candidate = ice.candidate.model_dump()
        await self.store.add_candidate(
            call.id, caller=by_caller, candidate=candidate, limit=CANDIDATES_KEPT
        )
        await self._signal("call.ice", call, user, ice.device_id, candidate=candidate)
        return call

    async def do_end(self, user: User, call_id: str, action: CallAction, end: EndIn) -> Call:
        """reject, busy or hangup: the call ends for both sides and goes into the timeline."""
        call = await self.access_call(user, call_id)
        rule = transition_for(action, by_caller=user.id == call.caller_id, state=call.state)
        ended = await self.store.transition(
            call.id,
            from_states=rule.allowed_from,
            to=rule.to,
            end_reason=rule.reason,
            at=datetime.now(UTC),
        )
        if ended is None:
            raise await self._lost_race(user, call, action)
        await self._signal(f"call.{action.value}", ended, user, end.device_id)
        await self._finish(ended)
        return ended

    async def _lost_race(self, user: User, before: Call, action: CallAction) -> ParleyError:
        """The call moved between reading and updating it: explain with its state now."""
        now = await self.access_call(user, before.id)
        if now.state is CallState.ACTIVE and action is CallAction.ANSWER:
            return Conflict("the call was answered on another device", ErrorCode.CALL_STATE)
        try:
            transition_for(action, by_caller=user.id == now.caller_id, state=now.state)
        except ParleyError as exc:
            return exc
        return Conflict("the call changed meanwhile; try again", ErrorCode.CALL_STATE)

    # -- events ------------------------------------------------------------------------------------

    async def _signal(
        self,
        kind: str,
        call: Call,
        sender: User | None,
        device: str | None,
        *,
        sdp: str | None = None,
        candidate: dict[str, Any] | None = None,
        candidates: list[dict[str, Any]] | None = None,
        audience: list[int] | None = None,
    ) -> None:
        metrics.CALL_SIGNALS.labels(kind).inc()
        await self.publish(
            CallEvent(
                type=kind,  # type: ignore[arg-type]
                call=call.public(),
                from_user_id=sender.id if sender else None,
                from_device=device,
                sdp=sdp,
                candidate=candidate,
                candidates=candidates,
                audience=audience or [call.caller_id, call.callee_id],
            )
        )

    async def greet(self, user: User) -> list[Event]:
        """What a stream that just opened needs to know of its user's live calls."""
        greeting: list[Event] = []
        for call in await self.store.list_calls(user_id=user.id, live=True, limit=20):
            if call.state is CallState.RINGING and user.id == call.callee_id:
                event = CallEvent(
                    type="call.offer",
                    call=call.public(),
                    from_user_id=call.caller_id,
                    from_device=call.caller_device,
                    sdp=call.offer_sdp,
                    candidates=call.caller_candidates,
                )
            else:
                by_caller = user.id == call.caller_id
                event = CallEvent(
                    type="call.sync",
                    call=call.public(),
                    from_user_id=call.peer_of(user.id),
                    from_device=call.callee_device if by_caller else call.caller_device,
                    sdp=call.answer_sdp if by_caller else call.offer_sdp,
                    candidates=call.callee_candidates if by_caller else call.caller_candidates,
                )
            greeting.append(event)
        return greeting

    # -- WebSocket frames (registered with the stream service) -------------------------------------

    def frame_handlers(
        self,
    ) -> dict[str, Callable[[User, dict[str, Any]], Awaitable[BaseModel | None]]]:
        async def offer(user: User, frame: dict[str, Any]) -> BaseModel | None:
            parsed = parse_frame(OfferFrame, frame)
            call, created = await self.do_offer(user, parsed.conversation_id, parsed)
            return _ack(parsed.ref, call, duplicate=not created)

        async def answer(user: User, frame: dict[str, Any]) -> BaseModel | None:
            parsed = parse_frame(AnswerFrame, frame)
            return _ack(parsed.ref, await self.do_answer(user, parsed.call_id, parsed))

        async def ice(user: User, frame: dict[str, Any]) -> BaseModel | None:
            parsed = parse_frame(IceFrame, frame)
            return _ack(parsed.ref, await self.do_ice(user, parsed.call_id, parsed))

        async def end(user: User, frame: dict[str, Any]) -> BaseModel | None:
            parsed = parse_frame(EndFrame, frame)
            action = CallAction(parsed.type.removeprefix("call."))
            return _ack(parsed.ref, await self.do_end(user, parsed.call_id, action, parsed))

        return {
            "call.offer": offer,
            "call.answer": answer,
            "call.ice": ice,
            "call.reject": end,
            "call.busy": end,
            "call.hangup": end,
        }

    # -- ending: timeouts and timeline records -----------------------------------------------------

    async def _finish(self, call: Call) -> None:
        metrics.CALLS_ENDED.labels(
            call.state.value, call.end_reason.value if call.end_reason else ""
        ).inc()
        try:
            await self._record(call)
        except ParleyError as exc:  # the sweeper writes it later
            log.warning("writing the record of call %s failed: %s", call.id, exc.message)

    async def _record(self, call: Call) -> None:
        await self.timeline.do_append_record(
            call.conversation_id,
            sender_id=call.caller_id,
            client_msg_id=f"call:{call.id}",
            body=record_text(call),
            metadata=record_metadata(call),
        )
        await self.store.mark_recorded(call.id, datetime.now(UTC))

    async def sweep(self) -> int:
        """End unanswered and over-long calls, write missing records; how many calls it ended."""
        now = datetime.now(UTC)
        answered_before = now - timedelta(seconds=self.settings.calls_max_seconds)
        missed: list[Call] = []
        overlong: list[Call] = []
        if await self.store.has_overdue(now, answered_before):
            missed = await self.store.sweep_unanswered(now)
            overlong = await self.store.sweep_overlong(now, answered_before)
        for call in missed:
            await self._signal("call.missed", call, None, None)
            await self._finish(call)
        for call in overlong:
            await self._signal("call.hangup", call, None, None)
            await self._finish(call)
        for call in await self.store.list_unrecorded(now - timedelta(seconds=RECORD_GRACE_SECONDS)):
            await self._record(call)
        return len(missed) + len(overlong)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.calls_sweep_seconds)
            try:
                await self.sweep()
            except Exception as exc:  # the database may be restarting; the deadlines keep
                log.warning("sweeping calls failed: %s", exc)


def _ack(ref: str | None, call: Call, *, duplicate: bool = False) -> BaseModel | None:
    """A frame sent with a `ref` is answered with the call; one without (ICE) is not."""
    if ref is None:
        return None
    return CallAckEvent(ref=ref, call=call.public(), duplicate=duplicate)
