"""Sign-in: exchange a name and password for a bearer token; who am I; sign out."""

from __future__ import annotations

from fastapi import APIRouter, Request

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.schemas import LoginIn, TokenOut, UserOut
from parley.core.errors import Forbidden
from parley.transports import bearer_token, client_ip

router = APIRouter(prefix="/v1", tags=["auth"])


@router.post("/auth/login", response_model=TokenOut)
async def login(body: LoginIn, request: Request, services: ServicesDep) -> TokenOut:
    """A new token for a name and password (anyone).

    Attempts per account name and per address are limited (PARLEY_AUTH_LOGIN_RATE_*): past
    either, 429 ERR_RATE_LIMITED with Retry-After, even for the right password. Password sign-in
    can be switched off (PARLEY_PASSWORD_LOGIN=false: single sign-on only); during maintenance
    only staff sign in.
    """
    if not services.settings.password_login:
        raise Forbidden(
            "password sign-in is off on this deployment; sign in with single sign-on "
            "(GET /v1/auth/sso/providers)"
        )
    user, token = await services.identity.do_login(
        body.name, body.password, client_ip=client_ip(request)
    )
    if not services.maintenance.admits(user):
        # Staff sign in during maintenance; everyone else is told to come back later.
        await services.identity.do_logout(token)
        raise services.maintenance.refusal()
    return TokenOut(token=token, user=UserOut.of(user))


@router.post("/auth/logout", status_code=204)
async def logout(request: Request, user: CurrentUser, services: ServicesDep) -> None:
    """Revoke the token this request carries; every stream opened with it closes (any node)."""
    token = bearer_token(request)
    if token:
        await services.identity.do_logout(token)


@router.get("/me", response_model=UserOut)
async def me(user: CurrentUser) -> UserOut:
    return UserOut.of(user)
