"""`parley sso providers | check`: the configured OpenID providers, and whether they answer."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from parley.assembly import Services
from parley.core.errors import ParleyError
from parley.runner import run_with_services

sso_app = typer.Typer(
    help="Single sign-on: the OpenID Connect providers of PARLEY_SSO_PROVIDERS.",
    no_args_is_help=True,
)
console = Console()


@sso_app.command("providers")
def sso_providers() -> None:
    """The providers, their redirect URIs (register these at each provider) and role mapping."""

    async def run(services: Services) -> Table:
        table = Table("name", "title", "issuer", "client", "redirect URI", "roles")
        base = services.settings.public_url or "http://<this host>"
        for provider in services.sso.providers():
            roles = ", ".join(f"{k}→{v}" for k, v in provider.roles.items())
            table.add_row(
                provider.name,
                provider.title,
                provider.issuer,
                provider.client_id,
                services.sso.redirect_uri(provider, base),
                f"{provider.role_claim}: {roles}" if provider.role_claim else "",
            )
        return table

    console.print(run_with_services(run))


@sso_app.command("check")
def sso_check(
    name: Annotated[str | None, typer.Argument(help="One provider (default: all).")] = None,
) -> None:
    """Read each provider's discovery document: reachable, right issuer, PKCE S256 supported."""

    async def run(services: Services) -> list[tuple[str, bool, str]]:
        names = [name] if name else [p.name for p in services.sso.providers()]
        checked = await asyncio.gather(*(_check(services, n) for n in names))
        return list(checked)

    results = run_with_services(run)
    if not results:
        console.print("No providers configured (PARLEY_SSO_PROVIDERS is empty).")
        return
    table = Table("provider", "result", "evidence")
    for provider, ok, evidence in results:
        table.add_row(provider, "[green]OK[/green]" if ok else "[red]FAIL[/red]", evidence)
    console.print(table)
    raise typer.Exit(0 if all(ok for _, ok, _ in results) else 1)


async def _check(services: Services, name: str) -> tuple[str, bool, str]:
    try:
        metadata: dict[str, Any] = await services.sso.check_provider(name)
    except ParleyError as exc:
        return name, False, exc.message
    methods = metadata.get("code_challenge_methods_supported") or []
    if "S256" not in methods:
        return name, False, "the provider does not announce PKCE S256"
    logout = "with" if metadata.get("end_session_endpoint") else "without"
    return name, True, f"{metadata['authorization_endpoint']} ({logout} logout endpoint)"
