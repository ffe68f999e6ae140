"""Running one command-line action against the configured deployment's database.

Every `parley ...` command that reads or changes stored state goes through `run_with_services`:
it applies migrations on the embedded SQLite, builds the services (without starting the server's
background loops), runs the action, disposes of the database, and turns a `ParleyError` into a
red one-line message and exit status 1.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.console import Console

from parley.assembly import Services
from parley.core.errors import ParleyError
from parley.logs import redacted
from parley.settings import Settings
from parley.storage.migrate import upgrade_to_head

T = TypeVar("T")
__all__ = ["cli_actor", "redacted", "run_with_services"]
console = Console()


def run_with_services(action: Callable[[Services], Awaitable[T]]) -> T:
    """Run `action` with this deployment's services; a ParleyError exits with status 1."""
    settings = Settings()
    if settings.is_embedded:
        upgrade_to_head(settings.effective_database_url)

    async def main() -> T:
        services = Services.build(settings)
        try:
            return await action(services)
        finally:
            await services.db.dispose()

    try:
        return asyncio.run(main())
    except ParleyError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(1) from None


def cli_actor(given: str = "") -> str:
    """Who is acting from a terminal, for the audit and decision logs: `cli:<login>`."""
    return given or f"cli:{getpass.getuser()}"
