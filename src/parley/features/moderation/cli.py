"""`parley moderation ...`: the queue, filter rules and sanctions from a terminal (on the
deployment's database, like `parley user`); every change is audited as `cli:<login>`."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from parley.assembly import Services
from parley.core.errors import BadInput, NotFound
from parley.core.moderation import ItemStatus
from parley.features.moderation.service import item_json, rule_json, sanction_json
from parley.runner import cli_actor, run_with_services

moderation_app = typer.Typer(
    help="Moderation: the queue, filter rules, warnings, mutes and bans.", no_args_is_help=True
)
console = Console()
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | None) -> int | None:
    """'30m', '12h', '7d' in seconds; None (or '') for no end."""
    if not text:
        return None
    found = _DURATION.match(text.strip())
    if found is None:
        raise typer.BadParameter("a duration is a number and s, m, h or d, e.g. 12h or 7d")
    return int(found.group(1)) * _UNIT[found.group(2)]


def _print_json(rows: Any) -> None:
    print(json.dumps(rows, ensure_ascii=False, indent=2))


@moderation_app.command("queue")
def queue(
    decided: Annotated[bool, typer.Option(help="Decided items instead of open ones.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    json_out: JsonOut = False,
) -> None:
    """Open queue items, oldest first (reports and held messages)."""

    async def run(services: Services) -> list[dict[str, Any]]:
        items = await services.moderation.store.list_items(
            status=ItemStatus.RESOLVED if decided else ItemStatus.OPEN,
            kind=None,
            tier=None,
            before_id=None,
            limit=limit,
        )
        return [item_json(i) for i in items]

    items = run_with_services(run)
    if json_out:
        _print_json(items)
        return
    table = Table("id", "kind", "tier", "conversation", "sender", "reports", "why", "text")
    for item in items:
        table.add_row(
            str(item["id"]),
            item["kind"],
            str(item["tier"]),
            str(item["conversation_id"]),
            str(item["sender"]["id"]),
            str(item["reports"]),
            item["rule"] or item["reason"],
            item["body"][:60],
        )
    console.print(table)
    console.print(f"{len(items)} item(s)")


@moderation_app.command("rules")
def rules(json_out: JsonOut = False) -> None:
    """Every filter rule."""

    async def run(services: Services) -> list[dict[str, Any]]:
        return [rule_json(r) for r in await services.moderation.store.list_rules()]

    found = run_with_services(run)
    if json_out:
        _print_json(found)
        return
    table = Table("id", "name", "kind", "verdict", "scope", "on", "config")
    for rule in found:
        scope = rule["scope"] + (f":{rule['scope_value']}" if rule["scope_value"] else "")
        table.add_row(
            str(rule["id"]),
            rule["name"],
            rule["kind"],
            rule["verdict"],
            scope,
            "yes" if rule["enabled"] else "no",
            json.dumps(rule["config"], ensure_ascii=False)[:60],
        )
    console.print(table)


@moderation_app.command("rule-add")
def rule_add(
    name: Annotated[str, typer.Argument(help="A unique name, shown to moderators.")],
    kind: Annotated[str, typer.Option(help="words|regex|links|attachments|flood|classifier")],
    config: Annotated[str, typer.Option(help='JSON, e.g. \'{"words": ["spam"]}\'')],
    verdict: Annotated[str, typer.Option(help="hold_for_review or reject")] = "hold_for_review",
    scope: Annotated[str, typer.Option(help="all | conversation_kind | inbox")] = "all",
    scope_value: Annotated[str, typer.Option(help="direct/group/room, or an inbox id")] = "",
) -> None:
    """Add a filter rule (docs/moderation.md lists each kind's config)."""
    try:
        parsed = json.loads(config)
    except ValueError as exc:
        raise typer.BadParameter(f"--config is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise typer.BadParameter("--config is a JSON object")

    async def run(services: Services) -> dict[str, Any]:
        rule = await services.moderation.do_add_rule(
            cli_actor(),
            name=name,
            kind=kind,
            verdict=verdict,
            scope=scope,
            scope_value=scope_value,
            config=parsed,
        )
        return rule_json(rule)

    rule = run_with_services(run)
    console.print(
        f"Rule [bold]{rule['id']}[/bold] {rule['name']} ({rule['kind']}, {rule['verdict']})"
    )


@moderation_app.command("rule-remove")
def rule_remove(rule_id: Annotated[int, typer.Argument(min=1)]) -> None:
    """Delete a filter rule."""

    async def run(services: Services) -> None:
        await services.moderation.do_delete_rule(cli_actor(), rule_id)

    run_with_services(run)
    console.print(f"Rule {rule_id} deleted")


@moderation_app.command("sanction")
def sanction(
    user: Annotated[str, typer.Argument(help="The user's name.")],
    kind: Annotated[str, typer.Argument(help="warn | mute | ban")],
    conversation: Annotated[
        int | None, typer.Option(help="Only in this conversation (default: everywhere).")
    ] = None,
    for_: Annotated[
        str | None, typer.Option("--for", help="How long: 30m, 12h, 7d (default: until lifted).")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
) -> None:
    """Warn, mute or ban a user."""
    seconds = parse_duration(for_)

    async def run(services: Services) -> dict[str, Any]:
        found = await services.identity.users.find_users_by_name([user])
        if not found:
            raise NotFound(f"no user named {user!r}")
        made = await services.moderation.do_sanction(
            cli_actor(),
            found[0].id,
            kind,
            conversation_id=conversation,
            duration_seconds=seconds,
            reason=reason,
        )
        return sanction_json(made, found[0])

    made = run_with_services(run)
    where = f"conversation {conversation}" if conversation else "everywhere"
    until = made["expires_at"] or "until lifted"
    console.print(f"Sanction [bold]{made['id']}[/bold]: {kind} {user}, {where}, {until}")


@moderation_app.command("lift")
def lift(
    sanction_id: Annotated[int, typer.Argument(min=1)],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
) -> None:
    """Lift a mute or ban before it ends."""

    async def run(services: Services) -> None:
        await services.moderation.do_lift(cli_actor(), sanction_id, reason)

    run_with_services(run)
    console.print(f"Sanction {sanction_id} lifted")


@moderation_app.command("sanctions")
def sanctions(
    user: Annotated[str | None, typer.Option(help="Only this user's.")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Past ones and warnings too.")] = False,
    json_out: JsonOut = False,
) -> None:
    """Mutes and bans in force (or every sanction with --all)."""

    async def run(services: Services) -> list[dict[str, Any]]:
        user_id = None
        if user:
            found = await services.identity.users.find_users_by_name([user])
            if not found:
                raise BadInput(f"no user named {user!r}")
            user_id = found[0].id
        at = None if everything else services.moderation.guard.clock()
        rows = await services.moderation.store.list_sanctions(
            user_id=user_id, active_at=at, limit=1000
        )
        users = await services.identity.users.find_users_by_id([s.user_id for s in rows])
        named = {u.id: u for u in users}
        return [sanction_json(s, named.get(s.user_id)) for s in rows]

    rows = run_with_services(run)
    if json_out:
        _print_json(rows)
        return
    table = Table("id", "user", "kind", "where", "until", "by", "reason", "lifted")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["user"]["name"],
            row["kind"],
            f"conversation {row['conversation_id']}" if row["conversation_id"] else "everywhere",
            row["expires_at"] or "-",
            row["created_by"],
            row["reason"],
            row["lifted_at"] or "",
        )
    console.print(table)
