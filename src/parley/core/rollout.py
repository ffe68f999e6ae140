"""A release's rollout: its stages, which moves between them are legal, and its state (pure).

Seed 004's runbook: `off → canary_1 → canary_10 → canary_50 → full`, one step at a time; from
any stage the release can be held or killed back to `canary_1`, or switched off entirely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from parley.core.errors import Conflict, ErrorCode

# Seed 004's P0 invariants: exactly 0 in any window, or the release stops.
P0_COUNTERS = ("ack_without_receipt_10s", "timeline_duplicate_detected", "read_rollback_detected")


class Stage(StrEnum):
    OFF = "off"
    CANARY_1 = "canary_1"
    CANARY_10 = "canary_10"
    CANARY_50 = "canary_50"
    FULL = "full"

    @property
    def percentage(self) -> int:
        """The share of keys the release flag is on for at this stage."""
        return _PERCENTAGES[self]

    @property
    def next(self) -> Stage | None:
        order = list(Stage)
        index = order.index(self)
        return order[index + 1] if index + 1 < len(order) else None


_PERCENTAGES = {
    Stage.OFF: 0,
    Stage.CANARY_1: 1,
    Stage.CANARY_10: 10,
    Stage.CANARY_50: 50,
    Stage.FULL: 100,
}


class Action(StrEnum):
    """What an operator (or the watcher) did to the rollout."""

    PROMOTE = "promote"  # one stage forward
    HOLD = "hold"  # back to canary_1, kill switch untouched (seed 004 §7.1)
    KILL = "kill"  # back to canary_1 with the kill switch on (§7.2, and the hard stop)
    RESUME = "resume"  # kill switch off again, stage unchanged
    ABORT = "abort"  # the release off entirely (0 %)


class Decision(StrEnum):
    PROCEED = "PROCEED"
    HOLD = "HOLD"
    ROLLBACK = "ROLLBACK"


@dataclass(frozen=True, slots=True)
class RolloutState:
    """Stage + kill switch + why, who and when (seed 004's `chat_get_v11_rollout_state`)."""

    release: str
    stage: Stage
    killed: bool
    reason: str
    actor: str
    changed_at: datetime
    # The last move (promote, hold, kill, resume): dwell and the gates' window count from here.
    stage_since: datetime
    # Bumped by every change: a transition applies only to the state it was decided on.
    version: int = 0


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of the decision log (seed 004 §9)."""

    id: int
    at: datetime
    action: Action
    from_stage: Stage
    to_stage: Stage
    killed: bool
    decision: Decision
    override: bool
    reason: str
    actor: str
    owner: str
    gates: dict[str, Any] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        """A promotion the gates said no to: an accepted one was PROCEED or an override."""
        return (
            self.action is Action.PROMOTE
            and self.decision is not Decision.PROCEED
            and not self.override
        )


def target_stage(action: Action, current: Stage) -> Stage:
    """Where `action` takes a release at `current`; an illegal move raises `Conflict`."""
    if action is Action.PROMOTE:
        following = current.next
        if following is None:
            raise Conflict(
                "the release is already at full; nothing to promote", ErrorCode.ILLEGAL_TRANSITION
            )
        return following
    if action in (Action.HOLD, Action.KILL):
        if current is Stage.OFF:
            raise Conflict(
                f"cannot {action.value} a release that is off; promote it to canary_1 first",
                ErrorCode.ILLEGAL_TRANSITION,
            )
        return Stage.CANARY_1
    if action is Action.ABORT:
        return Stage.OFF
    return current


def check_transition(current: Stage, target: Stage) -> None:
    """Raise unless `current → target` is a legal move (one forward, back to 1 %, or off)."""
    if target is Stage.OFF or target is current or target is current.next:
        return
    if target is Stage.CANARY_1 and current is not Stage.OFF:
        return
    raise Conflict(
        f"illegal rollout transition {current.value} → {target.value}: stages go "
        "off → canary_1 → canary_10 → canary_50 → full one at a time, back to canary_1, or off",
        ErrorCode.ILLEGAL_TRANSITION,
    )
