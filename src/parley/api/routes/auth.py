"""Sign-in: exchange a name and password for a bearer token; who am I; sign out."""

from __future__ import annotations

from fastapi import APIRouter, Request

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.schemas import LoginIn, TokenOut, UserOut
from parley.core.errors import Forbidden

router = APIRouter(prefix="/v1", tags=["auth"])


@router.post("/auth/login", response_model=TokenOut)
async def login(body: LoginIn, services: ServicesDep) -> TokenOut:
    if not services.settings.password_login:
        raise Forbidden(
            "password sign-in is off on this deployment; sign in with single sign-on "
            "(GET /v1/auth/sso/providers)"
        )
    user, token = await services.identity.do_login(body.name, body.password)
    if not services.maintenance.admits(user):
        # Staff sign in during maintenance; everyone else is told to come back later.
        await services.identity.do_logout(token)
        raise services.maintenance.refusal()
    return TokenOut(token=token, user=UserOut.of(user))


@router.post("/auth/logout", status_code=204)
async def logout(request: Request, user: CurrentUser, services: ServicesDep) -> None:
    token = request.headers["authorization"].split(" ", 1)[1].strip()
    await services.identity.do_logout(token)


@router.get("/me", response_model=UserOut)
async def me(user: CurrentUser) -> UserOut:
    return UserOut.of(user)
