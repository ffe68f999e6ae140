"""`parley inbox add | list`: website inboxes from a terminal (works with every node down)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from parley.assembly import Services
from parley.core.inboxes import Inbox
from parley.runner import cli_actor, run_with_services

inbox_app = typer.Typer(
    help="Website live-chat inboxes: widget tokens, allowed domains.", no_args_is_help=True
)
console = Console()


@inbox_app.command("add")
def inbox_add(
    name: Annotated[str, typer.Argument(help="The inbox's name, e.g. the site's.")],
    domain: Annotated[
        list[str] | None,
        typer.Option("--domain", help="A host allowed to embed the widget (repeatable)."),
    ] = None,
    operator: Annotated[
        list[str] | None,
        typer.Option("--operator", help="A user added to every visitor conversation."),
    ] = None,
    branch: Annotated[
        int | None,
        typer.Option("--branch", help="Branch id conversations go to when no rule matches."),
    ] = None,
    rule: Annotated[
        list[str] | None,
        typer.Option(
            "--rule",
            help='Routing rule as JSON: \'{"language": "ru", "branch_id": 2}\' (repeatable).',
        ),
    ] = None,
    auto_assign: Annotated[
        bool, typer.Option("--auto-assign", help="Assign new conversations to an operator.")
    ] = False,
    attachments: Annotated[
        bool, typer.Option("--attachments/--no-attachments", help="Visitors may upload files.")
    ] = True,
) -> None:
    """Create an inbox and print its widget token (it goes in the embed snippet)."""
    rules = []
    for text in rule or []:
        try:
            rules.append(json.loads(text))
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"--rule {text!r} is not JSON: {exc}") from None

    async def run(services: Services) -> Inbox:
        return await services.inboxes.do_create_inbox(
            cli_actor(),
            name,
            allowed_domains=domain or [],
            operators=operator or [],
            branch_id=branch,
            routing_rules=rules,
            auto_assign=auto_assign,
            allow_attachments=attachments,
        )

    inbox = run_with_services(run)
    console.print(f"Inbox [bold]{inbox.id}[/bold] {inbox.name}: widget token")
    print(inbox.widget_token)


@inbox_app.command("list")
def inbox_list() -> None:
    """Every inbox: token, allowed domains, operators, routing, on/off."""

    async def run(services: Services) -> list[Inbox]:
        return await services.inboxes.list_inboxes()

    table = Table(
        "id",
        "name",
        "widget token",
        "allowed domains",
        "operators",
        "branch",
        "rules",
        "auto-assign",
        "enabled",
    )
    for inbox in run_with_services(run):
        table.add_row(
            str(inbox.id),
            inbox.name,
            inbox.widget_token,
            ", ".join(inbox.allowed_domains),
            ", ".join(inbox.operators),
            str(inbox.branch_id) if inbox.branch_id else "-",
            str(len(inbox.routing_rules)),
            "yes" if inbox.auto_assign else "no",
            "yes" if inbox.enabled else "[red]no[/red]",
        )
    console.print(table)


@inbox_app.command("identity-secret")
def inbox_identity_secret(
    inbox_id: Annotated[int, typer.Argument(help="The inbox's id (see `parley inbox list`).")],
    off: Annotated[
        bool, typer.Option("--off", help="Turn identity verification off instead.")
    ] = False,
) -> None:
    """Turn visitor identity verification on (or rotate its secret) and print the secret."""

    async def run(services: Services) -> str:
        inbox = await services.inboxes.store.get_inbox(inbox_id)
        if inbox is None:
            raise typer.BadParameter(f"no inbox {inbox_id}")
        _, secret = await services.inboxes.do_set_identity_secret(
            cli_actor(), inbox, enabled=not off
        )
        return secret

    secret = run_with_services(run)
    if off:
        console.print(f"Inbox {inbox_id}: identity verification is off")
        return
    console.print(f"Inbox {inbox_id}: identity secret (give it to the site's backend)")
    print(secret)


@inbox_app.command("prune-visits")
def inbox_prune_visits(
    idle_days: Annotated[
        int, typer.Option("--idle-days", min=1, help="Idle for at least this many days.")
    ] = 30,
) -> None:
    """Delete anonymous visits in which nobody wrote (their empty conversation and visitor)."""

    async def run(services: Services) -> int:
        cutoff = datetime.now(UTC) - timedelta(days=idle_days)
        return await services.inboxes.store.prune_idle_visits(cutoff)

    pruned = run_with_services(run)
    console.print(f"Deleted {pruned} empty visit(s) idle for {idle_days}+ days")
