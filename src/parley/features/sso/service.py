"""Single sign-on with OpenID Connect: the authorization code flow with PKCE, state and nonce,
account linking, role mapping, and RP-initiated logout. Authlib does the protocol (discovery,
the authorization URL, the code exchange, ID token validation); this module decides who signs in.

A sign-in, step by step:
1. `do_start`: a random `state` (kept server-side, once, with the PKCE verifier, the nonce and a
   hash of a value in the browser's cookie) and a redirect to the provider.
2. `do_callback`: the state is taken (a replay finds nothing), must have been started by this
   browser and for this provider; the code is exchanged with the verifier, the ID token checked
   (signature, issuer, audience, expiry, nonce); the identity becomes a Parley user.
3. The browser is sent back with a one-time login code in the URL fragment (never sent to any
   server, so never in a log); the page trades it for an API token with `do_exchange`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx2
from authlib.integrations.base_client import OAuthError
from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App
from joserfc.errors import ExpiredTokenError, InvalidClaimError, JoseError

from parley import metrics
from parley.core.audit import Target
from parley.core.errors import (
    BadInput,
    ErrorCode,
    Forbidden,
    InvalidValue,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from parley.core.models import Role, User
from parley.realtime.ephemeral import Ephemeral
from parley.services.audit import AuditLog
from parley.services.identity import Identity, hash_token
from parley.settings import Settings, SsoProvider
from parley.storage.identities import IdentityStore

log = logging.getLogger(__name__)

LOGIN_CODE_TTL_SECONDS = 60
METADATA_MAX_AGE_SECONDS = 3600
# Roles from least to most powerful: when several claim values match, the strongest wins.
ROLE_ORDER = [Role.MEMBER, Role.OPERATOR, Role.DISPUTE_OPS, Role.MODERATOR, Role.ADMIN]
# Where a sign-in may send the browser back to: a path on this site (no scheme, no "//host").
_NEXT = re.compile(r"/(?![/\\])[A-Za-z0-9/._~%!$&'()*+,;=:@?-]{0,500}")


@dataclass(frozen=True, slots=True)
class Started:
    url: str  # the provider's authorization endpoint, with state, nonce and code_challenge
    binding: str  # the browser's cookie value (the state is only good with it)


def check_next(value: str | None) -> str:
    if not value:
        return "/"
    if not _NEXT.fullmatch(value):
        raise BadInput("next must be a path on this site, like /calls")
    return value


def binding_hash(binding: str) -> str:
    return hashlib.sha256(binding.encode()).hexdigest()


class SingleSignOn:
    def __init__(
        self,
        *,
        settings: Settings,
        identity: Identity,
        identities: IdentityStore,
        ephemeral: Ephemeral,
        audit: AuditLog,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.identities = identities
        self.ephemeral = ephemeral
        self.audit = audit
        self._providers = {provider.name: provider for provider in settings.sso_providers}
        self._oauth = OAuth()
        for provider in settings.sso_providers:
            self._oauth.register(
                name=provider.name,
                client_id=provider.client_id,
                client_secret=provider.client_secret or None,
                server_metadata_url=provider.issuer.rstrip("/")
                + "/.well-known/openid-configuration",
                client_kwargs={
                    "scope": " ".join(provider.scopes),
                    "code_challenge_method": "S256",
                    "timeout": 10,
                    "token_endpoint_auth_method": (
                        "client_secret_basic" if provider.client_secret else "none"
                    ),
                },
            )

    # -- providers ---------------------------------------------------------------------------------

    def providers(self) -> list[SsoProvider]:
        return list(self._providers.values())

    def access_provider(self, name: str) -> tuple[SsoProvider, StarletteOAuth2App]:
        provider = self._providers.get(name)
        if provider is None:
            raise NotFound(f"no single sign-on provider named {name!r}")
        client: StarletteOAuth2App = self._oauth.create_client(name)
        return provider, client

    async def check_provider(self, name: str) -> dict[str, Any]:
        """The provider's discovery document (`parley sso check`, smoke): it answers and fits."""
        provider, client = self.access_provider(name)
        metadata = await self._metadata(provider, client)
        return {key: value for key, value in metadata.items() if not key.startswith("_")}

    async def _metadata(self, provider: SsoProvider, client: StarletteOAuth2App) -> dict[str, Any]:
        loaded = client.server_metadata.get("_loaded_at")
        if loaded is not None and time.time() - loaded > METADATA_MAX_AGE_SECONDS:
            client.server_metadata.clear()  # keys rotate, endpoints move: read it again
        try:
            metadata: dict[str, Any] = await client.load_server_metadata()
        except (httpx2.HTTPError, ValueError) as exc:
            client.server_metadata.clear()
            raise Unavailable(
                f"the sign-in provider {provider.name!r} cannot be reached; try again later"
            ) from exc
        if metadata.get("issuer", "").rstrip("/") != provider.issuer.rstrip("/"):
            client.server_metadata.clear()
            raise Unavailable(
                f"the sign-in provider {provider.name!r} names another issuer in its discovery "
                "document; check PARLEY_SSO_PROVIDERS"
            )
        return metadata

    def redirect_uri(self, provider: SsoProvider, request_base: str) -> str:
        base = (self.settings.public_url or request_base).rstrip("/")
        return f"{base}/v1/auth/sso/{provider.name}/callback"

    # -- signing in --------------------------------------------------------------------------------

    async def do_start(
        self, name: str, *, next_path: str, request_base: str, binding: str | None
    ) -> Started:
        provider, client = self.access_provider(name)
        await self._metadata(provider, client)
        redirect_uri = self.redirect_uri(provider, request_base)
        # One value per browser: two sign-ins started in two tabs both stay good.
        binding = binding or secrets.token_urlsafe(24)
        started = await client.create_authorization_url(redirect_uri)
        pending = {
            "provider": provider.name,
            "redirect_uri": redirect_uri,
            "nonce": started["nonce"],
            "code_verifier": started["code_verifier"],
            "next": next_path,
            "binding": binding_hash(binding),
        }
        await self.ephemeral.put_once(
            f"sso:{started['state']}", json.dumps(pending), self.settings.sso_login_ttl_seconds
        )
        return Started(url=started["url"], binding=binding)

    async def do_callback(
        self,
        name: str,
        *,
        state: str | None,
        code: str | None,
        error: str | None,
        binding: str | None,
    ) -> tuple[str, str]:
        """Finish a sign-in; `(login code, next path)` for the page to come back to."""
        provider, client = self.access_provider(name)
        pending = await self._take_state(provider, state, binding)
        try:
            if error:
                raise Unauthenticated(
                    f"the provider did not sign you in ({_printable(error)})",
                    ErrorCode.SSO_FAILED,
                )
            if not code:
                raise InvalidValue("the provider sent no code", ErrorCode.SSO_FAILED)
            claims = await self._verified_claims(provider, client, code, pending)
            user = await self._account(provider, claims)
        except Exception as exc:
            metrics.SSO_LOGINS.labels(provider.name, _outcome(exc)).inc()
            raise
        metrics.SSO_LOGINS.labels(provider.name, "ok").inc()
        login_code = secrets.token_urlsafe(32)
        await self.ephemeral.put_once(
            f"sso-login:{login_code}",
            json.dumps({"user_id": user.id, "provider": provider.name}),
            LOGIN_CODE_TTL_SECONDS,
        )
        log.info("sso sign-in", extra={"provider": provider.name, "user_id": user.id})
        return login_code, str(pending["next"])

    async def _take_state(
        self, provider: SsoProvider, state: str | None, binding: str | None
    ) -> dict[str, Any]:
        if not state or len(state) > 512:
            raise InvalidValue("the sign-in came back without its state", ErrorCode.SSO_STATE)
        raw = await self.ephemeral.take_once(f"sso:{state}")
        if raw is None:
            metrics.SSO_LOGINS.labels(provider.name, "bad_state").inc()
            raise InvalidValue(
                "this sign-in is unknown, was already used or took too long; start again",
                ErrorCode.SSO_STATE,
            )
        pending: dict[str, Any] = json.loads(raw)
        foreign = not binding or not secrets.compare_digest(
            pending["binding"], binding_hash(binding)
        )
        if pending["provider"] != provider.name or foreign:
            metrics.SSO_LOGINS.labels(provider.name, "bad_state").inc()
            raise InvalidValue(
                "this sign-in was started in another browser or for another provider",
                ErrorCode.SSO_STATE,
            )
        return pending

    async def _verified_claims(
        self,
        provider: SsoProvider,
        client: StarletteOAuth2App,
        code: str,
        pending: dict[str, Any],
    ) -> dict[str, Any]:
        await self._metadata(provider, client)
        try:
            token = await client.fetch_access_token(
                redirect_uri=pending["redirect_uri"],
                code=code,
                code_verifier=pending["code_verifier"],
            )
        except OAuthError as exc:
            # invalid_grant: a used, expired or foreign code, or a PKCE verifier that does not fit.
            raise Unauthenticated(
                f"the provider refused the sign-in code ({_printable(exc.error)}); start again",
                ErrorCode.SSO_FAILED,
            ) from None
        except httpx2.HTTPError as exc:
            raise Unavailable(f"the sign-in provider {provider.name!r} cannot be reached") from exc
        if "id_token" not in token:
            raise Unauthenticated("the provider sent no ID token", ErrorCode.SSO_FAILED)
        try:
            claims = await client.parse_id_token(
                token,
                nonce=pending["nonce"],
                claims_options={
                    "iss": {"essential": True, "values": [provider.issuer.rstrip("/")]},
                    "aud": {"essential": True, "values": [provider.client_id]},
                    "nonce": {"essential": True},
                },
                leeway=self.settings.sso_clock_leeway_seconds,
            )
        except ExpiredTokenError:
            raise Unauthenticated(
                "the provider's ID token has expired (is its clock right?)", ErrorCode.SSO_FAILED
            ) from None
        except InvalidClaimError as exc:
            raise Unauthenticated(
                f"the provider's ID token has a wrong {exc.claim!r}", ErrorCode.SSO_FAILED
            ) from None
        except (JoseError, ValueError) as exc:
            raise Unauthenticated(
                f"the provider's ID token did not validate ({type(exc).__name__})",
                ErrorCode.SSO_FAILED,
            ) from None
        found = dict(claims)
        wanted = ("email", "email_verified", "preferred_username", "name", provider.role_claim)
        if any(name and name not in found for name in wanted):
            found = await self._with_userinfo(provider, client, token, found)
        return found

    async def _with_userinfo(
        self,
        provider: SsoProvider,
        client: StarletteOAuth2App,
        token: dict[str, Any],
        claims: dict[str, Any],
    ) -> dict[str, Any]:
        """Add the UserInfo endpoint's claims: with a code flow a conforming provider puts the
        e-mail, profile and groups there rather than in the ID token."""
        metadata = await self._metadata(provider, client)
        if not metadata.get("userinfo_endpoint"):
            return claims
        try:
            info = dict(await client.userinfo(token=token))
        except (httpx2.HTTPError, ValueError) as exc:
            raise Unavailable(
                f"the sign-in provider {provider.name!r} did not answer its UserInfo endpoint"
            ) from exc
        if str(info.get("sub")) != str(claims["sub"]):
            raise Unauthenticated(
                "the provider's UserInfo is about someone else", ErrorCode.SSO_FAILED
            )
        return {**info, **claims}

    # -- accounts ----------------------------------------------------------------------------------

    async def _account(self, provider: SsoProvider, claims: dict[str, Any]) -> User:
        """The Parley user of this identity: linked before, linked now by e-mail, or new."""
        subject = str(claims["sub"])
        email = claims.get("email")
        email = email.lower() if isinstance(email, str) and claims.get("email_verified") else None
        users = self.identity.users
        user = await self.identities.find_identity_user(provider.name, subject)
        if user is None and provider.link_by_email and email:
            user = await users.find_user_by_email(email)
        if user is None:
            if not provider.create_users:
                raise Forbidden(
                    "there is no Parley account for you; ask an administrator",
                    ErrorCode.SSO_NO_ACCOUNT,
                )
            user = await self._create_user(provider, claims, email)
            await self.audit.record(
                f"sso:{provider.name}",
                "user.create",
                Target.of("user", user.id),
                after={"name": user.name, "role": user.role},
            )
        if await self.identities.find_identity_user(provider.name, subject) is None:
            await self.audit.record(
                f"sso:{provider.name}",
                "sso.link",
                Target.of("user", user.id),
                after={"provider": provider.name, "by_email": email is not None},
            )
        await self.identities.link_identity(provider.name, subject, user.id, email)
        await self.identities.touch_identity(provider.name, subject, email)
        if provider.role_claim:
            role = mapped_role(provider, claims)
            if role is not user.role:
                # As any role change: audited, and the user's other tokens and streams end.
                await self.identity.do_set_role(
                    user,
                    role,
                    actor=f"sso:{provider.name}",
                    reason=f"role claim {provider.role_claim!r} at sign-in",
                )
                log.info(
                    "sso role changed",
                    extra={"provider": provider.name, "user_id": user.id, "role": role.value},
                )
                refreshed = await users.get_user(user.id)
                user = refreshed or user
        return user

    async def _create_user(
        self, provider: SsoProvider, claims: dict[str, Any], email: str | None
    ) -> User:
        wanted = claims.get("preferred_username") or (email or "").split("@")[0] or "user"
        base = re.sub(r"[^A-Za-z0-9._-]", "-", str(wanted))[:48].strip("-.") or "user"
        display = claims.get("name") if isinstance(claims.get("name"), str) else None
        taken_email = email and await self.identity.users.find_user_by_email(email)
        role = mapped_role(provider, claims) if provider.role_claim else provider_role(provider)
        for attempt in range(20):
            name = base if attempt == 0 else f"{base}-{secrets.token_hex(2)}"
            if await self.identity.users.find_users_by_name([name]):
                continue
            return await self.identity.do_create_user(
                name,
                role=role,
                display_name=(display or name)[:128],
                email=None if taken_email else email,
            )
        raise Unavailable("no free user name for this sign-in; try again")

    # -- after signing in ------------------------------------------------------------------------

    async def do_exchange(self, login_code: str) -> tuple[User, str]:
        """Trade the one-time login code for an API token (once, within a minute)."""
        raw = await self.ephemeral.take_once(f"sso-login:{login_code}")
        found = json.loads(raw) if raw else None
        user = await self.identity.users.get_user(int(found["user_id"])) if found else None
        if found is None or user is None:
            raise Unauthenticated(
                "the login code is unknown, used or expired; sign in again",
                ErrorCode.INVALID_CREDENTIALS,
            )
        token = await self.identity.do_issue_token(user, label=f"sso:{found['provider']}")
        return user, token

    async def do_logout(self, token: str, *, request_base: str) -> str | None:
        """Revoke the token; for an SSO sign-in, the provider's logout URL to send the browser."""
        label = await self.identity.tokens.find_token_label(hash_token(token))
        await self.identity.do_logout(token)
        name = label.removeprefix("sso:") if label and label.startswith("sso:") else None
        if name is None or name not in self._providers:
            return None
        provider, client = self.access_provider(name)
        try:
            await self._metadata(provider, client)
            base = (self.settings.public_url or request_base).rstrip("/")
            logout = await client.create_logout_url(
                post_logout_redirect_uri=f"{base}/", client_id=provider.client_id
            )
        except (Unavailable, RuntimeError):  # no end_session_endpoint, or unreachable
            return None
        return str(logout["url"])


def mapped_role(provider: SsoProvider, claims: dict[str, Any]) -> Role:
    """The strongest role the provider's claim grants, else the provider's default role."""
    value = claims.get(provider.role_claim)
    values = value if isinstance(value, list) else [value] if value is not None else []
    granted = [Role(provider.roles[str(v)]) for v in values if str(v) in provider.roles]
    return max(granted, key=ROLE_ORDER.index, default=provider_role(provider))


def provider_role(provider: SsoProvider) -> Role:
    return Role(provider.default_role)


def _printable(value: object) -> str:
    return re.sub(r"[^A-Za-z0-9_ .-]", "", str(value))[:80]


def _outcome(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    return str(code).removeprefix("ERR_").lower() if code else "error"
