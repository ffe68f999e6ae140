"""Users with tokens made straight in a deployment's database (no CLI process to start)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from parley.assembly import Services
from parley.core.models import Role
from parley.settings import Settings
from parley.storage.migrate import upgrade_to_head


def create_users(settings: Settings, roles: dict[str, Role]) -> dict[str, str]:
    """Migrate the database, create a user per name with its role, answer name → API token.

    Callable from sync and async code alike (it runs its own loop, in a thread when needed).
    """
    upgrade_to_head(settings.effective_database_url)

    async def create() -> dict[str, str]:
        services = Services.build(settings)
        try:
            tokens = {}
            for name, role in roles.items():
                user = await services.identity.do_create_user(name, role=role)
                tokens[name] = await services.identity.do_issue_token(user)
            return tokens
        finally:
            await services.db.dispose()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, create()).result()


def issue_token(settings: Settings, name: str) -> str:
    """A new API token for an existing user (as `parley user token NAME` prints)."""

    async def issue() -> str:
        services = Services.build(settings)
        try:
            (user,) = await services.identity.users.find_users_by_name([name])
            return await services.identity.do_issue_token(user)
        finally:
            await services.db.dispose()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, issue()).result()
