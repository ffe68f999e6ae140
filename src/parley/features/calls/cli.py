"""`parley calls list | ice`: calls and ICE servers from a terminal (works with every node down)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from parley.assembly import Services
from parley.core.calls import Call
from parley.features.calls.turn import ice_config
from parley.runner import run_with_services

calls_app = typer.Typer(
    help="Voice and video calls: recent and live calls, and the ICE servers clients get.",
    no_args_is_help=True,
)
console = Console()


@calls_app.command("list")
def calls_list(
    live: Annotated[bool, typer.Option(help="Only calls ringing or going on now.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many, newest first.")] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="Print the calls as JSON.")] = False,
) -> None:
    """Calls, newest first: who called whom, state, reason, duration (no SDP, no addresses)."""

    async def run(services: Services) -> list[Call]:
        return await services.calls.store.list_calls(live=live, limit=limit)

    found = run_with_services(run)
    if json_out:
        print(json.dumps({"calls": [call.public() for call in found]}, indent=2))
        return
    table = Table("id", "conversation", "caller → callee", "media", "state", "reason", "duration")
    for call in found:
        table.add_row(
            call.id,
            str(call.conversation_id),
            f"{call.caller_id} → {call.callee_id}",
            call.media.value,
            call.state.value,
            call.end_reason.value if call.end_reason else "",
            "" if call.duration_seconds is None else f"{call.duration_seconds} s",
        )
    console.print(table)


@calls_app.command("ice")
def calls_ice(
    user_id: Annotated[int, typer.Argument(min=1, help="The user the TURN credentials are for.")],
) -> None:
    """What GET /v1/calls/config hands this user: STUN/TURN URLs and fresh TURN credentials.

    Check a TURN server with them, e.g. coturn's `turnutils_uclient -u USER -w PASSWORD HOST`.
    """

    async def run(services: Services) -> dict[str, Any]:
        return ice_config(services.settings, user_id, time.time())

    config = run_with_services(run)
    if not config["ice_servers"]:
        console.print(
            "[yellow]No ICE servers configured[/yellow]: set PARLEY_CALLS_STUN_URLS, and "
            "PARLEY_CALLS_TURN_URLS with PARLEY_CALLS_TURN_SECRET (docs/calls.md)."
        )
    print(json.dumps(config, indent=2))
