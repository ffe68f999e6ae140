"""`parley preflight`: this deployment's configuration against a profile, as a table or JSON."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from parley.assembly import Services
from parley.features.ops.preflight import Context, Finding, Status, run_preflight
from parley.runner import run_with_services

console = Console()
COLOURS = {Status.PASS: "green", Status.WARN: "yellow", Status.FAIL: "red", Status.SKIP: "dim"}


def preflight_command(
    profile: Annotated[
        Literal["production", "staging", "embedded"] | None,
        typer.Option(help="What the deployment is for [default: PARLEY_PROFILE, or derived]."),
    ] = None,
    url: Annotated[
        str, typer.Option(help="The URL users reach (TLS check) [default: PARLEY_PUBLIC_URL].")
    ] = "",
    ca_file: Annotated[
        str | None, typer.Option(help="Trust this CA bundle for the TLS check (a private CA).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Check this deployment's configuration: database, migrations, Redis, secrets, inboxes,
    privacy URL, TLS, alert receivers, disk. Exits 1 if any check fails."""

    async def run(services: Services) -> tuple[str, list[Finding]]:
        chosen = profile or services.settings.effective_profile
        return chosen, await run_preflight(Context(services, chosen, url=url, ca_file=ca_file))

    chosen, findings = run_with_services(run)
    failed = [f for f in findings if f.status is Status.FAIL]
    if json_out:
        print(json.dumps({"profile": chosen, "checks": [f.to_json() for f in findings]}, indent=2))
    else:
        table = Table("check", "result", "evidence", title=f"Preflight ({chosen} profile)")
        for finding in findings:
            colour = COLOURS[finding.status]
            result = f"[{colour}]{finding.status.value.upper()}[/{colour}]"
            table.add_row(finding.title, result, finding.evidence)
        console.print(table)
        if failed:
            console.print(f"[red]{len(failed)} failed[/red]: " + ", ".join(f.name for f in failed))
        else:
            console.print(f"[green]Fit for {chosen}[/green]")
    raise typer.Exit(1 if failed else 0)
