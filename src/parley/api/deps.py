"""FastAPI dependencies: the process's services and the authenticated user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from parley.assembly import Services
from parley.core.errors import ErrorCode, Forbidden, Unauthenticated
from parley.core.models import Role, User
from parley.services.identity import Credential

_bearer = HTTPBearer(auto_error=False, description="An API token (`pk_...`).")


# Dependencies are `async def` even with nothing to await: FastAPI runs a plain `def` in its
# thread pool, a hand-off to a worker thread and back on every request.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_credential(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Credential:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    return await services.identity.access_credential(credentials.credentials)


CurrentCredential = Annotated[Credential, Depends(current_credential)]


async def current_user(credential: CurrentCredential) -> User:
    return credential.user


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> User:
    """Admins only; anyone else 403."""
    if user.role is not Role.ADMIN:
        raise Forbidden("only admins may do this", ErrorCode.FORBIDDEN)
    return user


AdminUser = Annotated[User, Depends(admin_user)]
