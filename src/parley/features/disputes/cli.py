"""`parley disputes list | show`: disputes from a terminal (read-only; moves are dispute_ops'
work in the console or over REST, behind the dispute_tools_v2 flag)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from parley.assembly import Services
from parley.core.disputes import ACTIVE_STATUSES
from parley.core.errors import NotFound
from parley.runner import run_with_services

disputes_app = typer.Typer(help="Disputes: list them, see one's history.", no_args_is_help=True)
console = Console()


@disputes_app.command("list")
def list_disputes(
    overdue: Annotated[bool, typer.Option(help="Only active disputes past their SLA.")] = False,
    everything: Annotated[bool, typer.Option("--all", help="Resolved and cancelled too.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Active disputes, newest first (amounts in minor units)."""

    async def run(services: Services) -> list[dict[str, Any]]:
        disputes = services.disputes
        at = disputes.clock()
        found = await disputes.store.list_disputes(
            statuses=None if everything or overdue else list(ACTIVE_STATUSES),
            overdue_at=at if overdue else None,
            assignee_id=None,
            party_id=None,
            before_id=None,
            limit=limit,
        )
        return [await disputes.detail(d, staff=True) for d in found]

    rows = run_with_services(run)
    if json_out:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("id", "status", "amount", "reference", "buyer", "seller", "deadline", "overdue")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["status"],
            f"{row['amount']} {row['currency']}",
            row["reference"],
            row["buyer"]["name"],
            row["seller"]["name"],
            row["deadline_at"] or "-",
            "OVERDUE" if row["overdue"] else "",
        )
    console.print(table)
    console.print(f"{len(rows)} dispute(s)")


@disputes_app.command("show")
def show(dispute_id: Annotated[int, typer.Argument(min=1)]) -> None:
    """One dispute with its history, evidence and webhook deliveries, as JSON."""

    async def run(services: Services) -> dict[str, Any]:
        dispute = await services.disputes.store.get_dispute(dispute_id)
        if dispute is None:
            raise NotFound(f"no dispute {dispute_id}")
        return await services.disputes.detail(dispute, staff=True)

    print(json.dumps(run_with_services(run), ensure_ascii=False, indent=2))
