"""Single sign-on over HTTP: the providers, the redirect there and back, the code exchange, and
logout. Anyone may start a sign-in (that is the point); the callback only finishes one this
browser started; logout needs the bearer token it ends.

Nothing here writes a code, state, token or cookie into a log or a URL a server sees: the access
log records route templates only, and the login code travels in a URL fragment.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.schemas import Input, TokenOut, UserOut
from parley.features.sso.service import check_next

router = APIRouter(prefix="/v1/auth/sso", tags=["auth"])
COOKIE = "parley_sso"
COOKIE_PATH = "/v1/auth/sso/"
ProviderName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]


class ProviderOut(BaseModel):
    name: str
    title: str
    login_url: str


class ProvidersOut(BaseModel):
    providers: list[ProviderOut]
    password_login: bool


class ExchangeIn(Input):
    code: Annotated[str, Field(min_length=1, max_length=128)]


class LogoutOut(BaseModel):
    # Send the browser here to end the session at the provider too (null: none to end).
    logout_url: str | None


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/providers", response_model=ProvidersOut)
async def providers(services: ServicesDep) -> ProvidersOut:
    """Public: the sign-in buttons a page shows."""
    return ProvidersOut(
        providers=[
            ProviderOut(
                name=p.name, title=p.title or p.name, login_url=f"/v1/auth/sso/{p.name}/login"
            )
            for p in services.sso.providers()
        ],
        password_login=services.settings.password_login,
    )


@router.get("/{name}/login", response_class=RedirectResponse, status_code=302)
async def login(
    name: str,
    request: Request,
    services: ServicesDep,
    next: Annotated[str | None, Query(max_length=512)] = None,
) -> RedirectResponse:
    """Public: go to the provider; `next` is the path on this site to come back to."""
    started = await services.sso.do_start(
        name,
        next_path=check_next(next),
        request_base=_base(request),
        binding=request.cookies.get(COOKIE),
    )
    response = RedirectResponse(started.url, status_code=302)
    response.set_cookie(
        COOKIE,
        started.binding,
        max_age=services.settings.sso_login_ttl_seconds,
        path=COOKIE_PATH,
        # Behind a TLS-terminating proxy the request may look like http: trust the public URL.
        secure=request.url.scheme == "https" or services.settings.public_url.startswith("https://"),
        httponly=True,
        # Sent on the provider's top-level redirect back; not on other sites' requests.
        samesite="lax",
    )
    return response


@router.get("/{name}/callback", response_class=RedirectResponse, status_code=303)
async def callback(
    name: str,
    request: Request,
    services: ServicesDep,
    state: Annotated[str | None, Query(max_length=512)] = None,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
) -> RedirectResponse:
    """The provider sends the browser here; it goes on to `next#parley_login=<one-time code>`."""
    login_code, next_path = await services.sso.do_callback(
        name, state=state, code=code, error=error, binding=request.cookies.get(COOKIE)
    )
    response = RedirectResponse(f"{next_path}#parley_login={login_code}", status_code=303)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.post("/exchange", response_model=TokenOut)
async def exchange(body: ExchangeIn, services: ServicesDep) -> TokenOut:
    """Public: the one-time login code (valid 60 s, once) for an API token."""
    user, token = await services.sso.do_exchange(body.code)
    return TokenOut(token=token, user=UserOut.of(user))


@router.post("/logout", response_model=LogoutOut)
async def logout(request: Request, user: CurrentUser, services: ServicesDep) -> LogoutOut:
    """Sign out: the token is revoked; `logout_url` ends the provider's session too."""
    token = request.headers["authorization"].split(" ", 1)[1].strip()
    return LogoutOut(logout_url=await services.sso.do_logout(token, request_base=_base(request)))
