"""`parley privacy ...`: requests made by e-mail (export, erase), legal holds, retention."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from parley.assembly import Services
from parley.core.errors import NotFound
from parley.core.exports import ExportJob
from parley.core.models import User
from parley.core.privacy import Erasure, ErasurePolicy, LegalHold, RetentionRun
from parley.features.export.cli import report, run_job
from parley.runner import cli_actor, run_with_services

privacy_app = typer.Typer(
    help="Personal data: export and erase on request, legal holds, retention.",
    no_args_is_help=True,
)
hold_app = typer.Typer(help="Legal holds: conversations retention and erasure must keep.")
privacy_app.add_typer(hold_app, name="hold")
console = Console()

Reason = Annotated[str, typer.Option(help="Why: the request's reference (goes to the audit log).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON instead of a table.")]


async def _person(services: Services, name: str) -> User:
    found = await services.identity.users.find_users_by_name([name])
    if not found:
        raise NotFound(f"no user named {name!r}; `parley user list` shows who exists")
    return found[0]


@privacy_app.command("export")
def export_person(
    name: Annotated[str, typer.Argument(help="The person's user name.")],
    reason: Reason,
    out: Annotated[Path | None, typer.Option(help="Where to write the ZIP.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Everything stored about a person, as one ZIP (for a request made by e-mail)."""

    async def run(services: Services) -> tuple[ExportJob, Path]:
        person = await _person(services, name)
        job = await services.exports.do_request_person(cli_actor(), person.id, reason=reason)
        return await run_job(services, job, out)

    job, target = run_with_services(run)
    report(job, target, json_out)


@privacy_app.command("erase")
def erase(
    name: Annotated[str, typer.Argument(help="The person's user name.")],
    reason: Reason,
    policy: Annotated[
        ErasurePolicy,
        typer.Option(help="tombstone: delete their messages; anonymize: keep the text, unlinked."),
    ] = ErasurePolicy.TOMBSTONE,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Erase a person: their messages (per --policy), files and identity. Cannot be undone."""
    if not yes:
        typer.confirm(f"Erase {name} ({policy.value})? This cannot be undone", abort=True)

    async def run(services: Services) -> Erasure:
        person = await _person(services, name)
        return await services.privacy.do_erase(cli_actor(), person.id, policy=policy, reason=reason)

    done = run_with_services(run)
    if json_out:
        print(json.dumps({**asdict(done), "policy": done.policy.value}))
        return
    console.print(
        f"Erased user {done.user_id} ({done.policy.value}): {done.messages} messages made "
        f"tombstones, {done.attachments} files deleted, {done.sessions} widget sessions ended."
    )


def _holds_table(holds: list[LegalHold]) -> Table:
    table = Table("id", "conversation", "reason", "placed by", "placed (UTC)", "released")
    for hold in holds:
        released = (
            f"{hold.released_at:%Y-%m-%d %H:%M} by {hold.released_by}" if hold.released_at else ""
        )
        table.add_row(
            str(hold.id),
            str(hold.conversation_id),
            hold.reason,
            hold.placed_by,
            f"{hold.placed_at:%Y-%m-%d %H:%M}",
            released,
        )
    return table


@hold_app.command("add")
def hold_add(
    conversation_id: Annotated[int, typer.Argument(min=1)],
    reason: Reason,
) -> None:
    """Put a conversation under legal hold."""
    hold = run_with_services(
        lambda s: s.privacy.do_place_hold(cli_actor(), conversation_id, reason)
    )
    console.print(f"Hold [bold]{hold.id}[/bold] on conversation {hold.conversation_id}")


@hold_app.command("release")
def hold_release(hold_id: Annotated[int, typer.Argument(min=1)], reason: Reason) -> None:
    """Release a legal hold."""
    hold = run_with_services(lambda s: s.privacy.do_release_hold(cli_actor(), hold_id, reason))
    console.print(f"Released hold {hold.id} on conversation {hold.conversation_id}")


@hold_app.command("list")
def hold_list(
    include_released: Annotated[bool, typer.Option("--all", help="Released ones too.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Legal holds, active ones unless --all."""
    holds = run_with_services(lambda s: s.privacy.list_holds(active_only=not include_released))
    if json_out:
        print(json.dumps([asdict(h) for h in holds], default=str))
    elif holds:
        console.print(_holds_table(holds))
    else:
        console.print("No legal holds.")


@privacy_app.command("retention")
def retention(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, delete nothing.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run the retention job now: messages past PARLEY_RETENTION_DAYS become tombstones."""

    async def run(services: Services) -> RetentionRun:
        return await services.privacy.do_retention(cli_actor(), dry_run=dry_run)

    done = run_with_services(run)
    if json_out:
        print(json.dumps(asdict(done), default=str))
        return
    verb = "would purge" if done.dry_run else "purged"
    held = f"; skipped under legal hold: {done.held}" if done.held else ""
    console.print(
        f"Retention {verb} {done.purged} messages in {done.conversations} conversations{held}"
    )
