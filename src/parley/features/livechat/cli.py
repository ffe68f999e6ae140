"""`parley branch add | list`: live-chat branches from a terminal (works with every node down)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from parley.assembly import Services
from parley.core.livechat import Branch
from parley.runner import cli_actor, run_with_services

branch_app = typer.Typer(
    help="Live-chat branches: teams of operators that conversations are routed to.",
    no_args_is_help=True,
)
console = Console()


@branch_app.command("add")
def branch_add(
    name: Annotated[str, typer.Argument(help="The branch's name, e.g. 'Support RU'.")],
    operator: Annotated[
        list[str] | None,
        typer.Option("--operator", help="A user who works this branch's conversations."),
    ] = None,
) -> None:
    """Create a branch and print its id (routing rules and inboxes name it)."""

    async def run(services: Services) -> Branch:
        return await services.branches.do_create(cli_actor(), name, operator or [])

    branch = run_with_services(run)
    console.print(f"Branch [bold]{branch.id}[/bold] {branch.name}")


@branch_app.command("list")
def branch_list() -> None:
    """Every branch with its operators."""

    async def run(services: Services) -> list[Branch]:
        return await services.branches.list_branches()

    table = Table("id", "name", "operators", "created")
    for branch in run_with_services(run):
        table.add_row(
            str(branch.id),
            branch.name,
            ", ".join(branch.operators) or "-",
            branch.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)
