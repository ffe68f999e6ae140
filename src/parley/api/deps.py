"""FastAPI dependencies: the process's services and the authenticated user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from parley.assembly import Services
from parley.core.errors import Unauthenticated
from parley.core.models import User

_bearer = HTTPBearer(auto_error=False, description="An API token (`pk_...`).")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_user(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    return await services.identity.access_token(credentials.credentials)


CurrentUser = Annotated[User, Depends(current_user)]
