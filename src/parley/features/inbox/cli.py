"""`parley inbox add | list`: website inboxes from a terminal (works with every node down)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from parley.core.inboxes import Inbox
from parley.services.container import Services

inbox_app = typer.Typer(
    help="Website live-chat inboxes: widget tokens, allowed domains.", no_args_is_help=True
)
console = Console()
T = TypeVar("T")


def _run_on_database(action: Callable[[Services], Awaitable[T]]) -> T:
    from parley.cli import _run  # the CLI's one way to reach the database

    return _run(action)


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
) -> None:
    """Create an inbox and print its widget token (it goes in the embed snippet)."""

    async def run(services: Services) -> Inbox:
        return await services.inboxes.do_create_inbox(
            name, allowed_domains=domain or [], operators=operator or []
        )

    inbox = _run_on_database(run)
    console.print(f"Inbox [bold]{inbox.id}[/bold] {inbox.name}: widget token")
    print(inbox.widget_token)


@inbox_app.command("list")
def inbox_list() -> None:
    """Every inbox: token, allowed domains, operators, on/off."""

    async def run(services: Services) -> list[Inbox]:
        return await services.inboxes.list_inboxes()

    table = Table("id", "name", "widget token", "allowed domains", "operators", "enabled")
    for inbox in _run_on_database(run):
        table.add_row(
            str(inbox.id),
            inbox.name,
            inbox.widget_token,
            ", ".join(inbox.allowed_domains),
            ", ".join(inbox.operators),
            "yes" if inbox.enabled else "[red]no[/red]",
        )
    console.print(table)
