"""Moderation REST: members report messages; moderators and admins work the queue, sanctions
and filter rules (`/v1/moderation/...`). Every other role gets 403 there."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.routes.conversations import ConversationId
from parley.api.schemas import Input, Text
from parley.core.limits import SEQ_MAX
from parley.features.moderation.service import (
    MAX_SANCTION_SECONDS,
    check_moderator,
    rule_json,
    sanction_json,
)

router = APIRouter(tags=["moderation"])

Id = Annotated[int, Path(ge=1, le=SEQ_MAX)]
Reason = Text(2000)  # type: ignore[valid-type]
Seconds = Annotated[int, Field(ge=1, le=MAX_SANCTION_SECONDS)]


class ReportIn(Input):
    reason: Annotated[str, Field(max_length=20)] = "other"
    note: Reason = ""


class ReportOut(BaseModel):
    reported: bool = Field(description="False when you had already reported this message.")
    item_id: int


class ActionIn(Input):
    action: Annotated[str, Field(max_length=20)]
    reason: Reason = ""
    # warn | mute | ban: in this conversation, or everywhere; for how long (null: until lifted).
    scope: Annotated[str, Field(max_length=20)] = "conversation"
    duration_seconds: Seconds | None = None
    # warn | mute | ban also remove the reported or held message unless this is false.
    remove_content: bool = True


class SanctionIn(Input):
    user_id: Annotated[int, Field(ge=1, le=SEQ_MAX)]
    kind: Annotated[str, Field(max_length=8)]
    conversation_id: Annotated[int, Field(ge=1, le=SEQ_MAX)] | None = None
    duration_seconds: Seconds | None = None
    reason: Reason = ""


class LiftIn(Input):
    reason: Reason = ""


class RuleIn(Input):
    name: Text(100, min_length=1)  # type: ignore[valid-type]
    kind: Annotated[str, Field(max_length=20)]
    verdict: Annotated[str, Field(max_length=20)] = "hold_for_review"
    scope: Annotated[str, Field(max_length=20)] = "all"
    scope_value: Annotated[str, Field(max_length=64)] = ""
    config: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True


class RulePatch(Input):
    name: Text(100, min_length=1) | None = None  # type: ignore[valid-type]
    verdict: Annotated[str, Field(max_length=20)] | None = None
    scope: Annotated[str, Field(max_length=20)] | None = None
    scope_value: Annotated[str, Field(max_length=64)] | None = None
    config: dict[str, Any] | None = None
    enabled: bool | None = None


class ItemsOut(BaseModel):
    items: list[dict[str, Any]]


class SanctionsOut(BaseModel):
    sanctions: list[dict[str, Any]]


class RulesOut(BaseModel):
    rules: list[dict[str, Any]]


class BacklogOut(BaseModel):
    open: int


@router.post(
    "/v1/conversations/{conversation_id}/messages/{message_id}/report",
    response_model=ReportOut,
    status_code=201,
    tags=["messages"],
)
async def report_message(
    conversation_id: ConversationId,
    message_id: Id,
    body: ReportIn,
    user: CurrentUser,
    services: ServicesDep,
) -> ReportOut:
    """Report a message to the moderators (members of the conversation; not your own)."""
    item, added = await services.moderation.do_report(
        user, conversation_id, message_id, body.reason, body.note
    )
    return ReportOut(reported=added, item_id=item.id)


@router.get("/v1/me/sanctions", response_model=SanctionsOut, tags=["moderation"])
async def my_sanctions(user: CurrentUser, services: ServicesDep) -> SanctionsOut:
    """Your own warnings, mutes and bans (active and past)."""
    return SanctionsOut(sanctions=await services.moderation.list_my_sanctions(user))


# -- the queue (moderators, admins) -------------------------------------------------------------


@router.get("/v1/moderation/queue", response_model=ItemsOut)
async def list_queue(
    user: CurrentUser,
    services: ServicesDep,
    status: Annotated[str | None, Query(max_length=20)] = "open",
    kind: Annotated[str | None, Query(max_length=20)] = None,
    tier: Annotated[int | None, Query(ge=1, le=2)] = None,
    before_id: Annotated[int | None, Query(ge=1, le=SEQ_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ItemsOut:
    """Open items oldest first (`before_id` pages on past the last one); decided ones newest
    first. `status=` (empty) lists all."""
    items = await services.moderation.list_queue(
        user, status=status or None, kind=kind, tier=tier, before_id=before_id, limit=limit
    )
    return ItemsOut(items=items)


@router.get("/v1/moderation/backlog", response_model=BacklogOut)
async def backlog(user: CurrentUser, services: ServicesDep) -> BacklogOut:
    """Open queue items: what the `release_max_moderation_backlog` gate counts."""
    check_moderator(user)
    return BacklogOut(open=await services.moderation.backlog())


@router.get("/v1/moderation/queue/{item_id}")
async def get_item(item_id: Id, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    item = await services.moderation.access_item(user, item_id)
    return await services.moderation.item_detail(item)


@router.post("/v1/moderation/queue/{item_id}/actions")
async def act_on_item(
    item_id: Id, body: ActionIn, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """approve | remove | warn | mute | ban | escalate. Escalated items: admins only."""
    item = await services.moderation.access_item(user, item_id)
    return await services.moderation.do_act(
        user,
        item,
        body.action,
        reason=body.reason,
        scope=body.scope,
        duration_seconds=body.duration_seconds,
        remove_content=body.remove_content,
    )


# -- sanctions -----------------------------------------------------------------------------------


@router.get("/v1/moderation/sanctions", response_model=SanctionsOut)
async def list_sanctions(
    user: CurrentUser,
    services: ServicesDep,
    user_id: Annotated[int | None, Query(ge=1, le=SEQ_MAX)] = None,
    active: bool = True,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> SanctionsOut:
    found = await services.moderation.list_sanctions(
        user, user_id=user_id, active=active, limit=limit
    )
    return SanctionsOut(sanctions=found)


@router.post("/v1/moderation/sanctions", status_code=201)
async def add_sanction(
    body: SanctionIn, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """Warn, mute or ban a user: in one conversation (`conversation_id`) or everywhere."""
    sanction = await services.moderation.do_sanction(
        user,
        body.user_id,
        body.kind,
        conversation_id=body.conversation_id,
        duration_seconds=body.duration_seconds,
        reason=body.reason,
    )
    return sanction_json(sanction)


@router.post("/v1/moderation/sanctions/{sanction_id}/lift")
async def lift_sanction(
    sanction_id: Id, body: LiftIn, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    return sanction_json(await services.moderation.do_lift(user, sanction_id, body.reason))


# -- filter rules --------------------------------------------------------------------------------


@router.get("/v1/moderation/rules", response_model=RulesOut)
async def list_rules(user: CurrentUser, services: ServicesDep) -> RulesOut:
    return RulesOut(rules=[rule_json(r) for r in await services.moderation.list_rules(user)])


@router.post("/v1/moderation/rules", status_code=201)
async def add_rule(body: RuleIn, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """A filter rule (docs/moderation.md lists each kind's `config`)."""
    rule = await services.moderation.do_add_rule(
        user,
        name=body.name,
        enabled=body.enabled,
        kind=body.kind,
        verdict=body.verdict,
        scope=body.scope,
        scope_value=body.scope_value,
        config=body.config,
    )
    return rule_json(rule)


@router.patch("/v1/moderation/rules/{rule_id}")
async def update_rule(
    rule_id: Id, body: RulePatch, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    return rule_json(await services.moderation.do_update_rule(user, rule_id, changes))


@router.delete("/v1/moderation/rules/{rule_id}", status_code=204)
async def delete_rule(rule_id: Id, user: CurrentUser, services: ServicesDep) -> None:
    await services.moderation.do_delete_rule(user, rule_id)
