"""Single sign-on against a real OpenID provider (oidc-provider, started by the test): sign-in
with PKCE, state and nonce, account linking, role mapping, logout; a bad state, a replayed code,
an expired ID token; no credential in a log line.

The test plays the browser: one cookie-keeping HTTP client for the provider, one for Parley (in
process), following each redirect to whichever of the two it points at.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from parley.assembly import Services
from parley.core.models import Role
from parley.settings import Settings, SsoProvider
from tests.integration.stored import assert_error
from tests.support.oidc import OpenIdProvider, client, start_provider, stop_provider

PARLEY = "http://parley.test"
SECRET = "client-secret-" + "x" * 16


@pytest.fixture(scope="module")
def providers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[OpenIdProvider, OpenIdProvider]]:
    workdir = tmp_path_factory.mktemp("oidc")
    corp = start_provider(
        workdir,
        [
            client("parley-corp", SECRET, PARLEY, "corp"),
            client("parley-invite", SECRET, PARLEY, "invite"),
        ],
    )
    # A provider whose clock runs two hours behind: every ID token it issues has expired.
    skewed = start_provider(
        workdir, [client("parley-skewed", SECRET, PARLEY, "skewed")], clock_behind_seconds=7200
    )
    yield corp, skewed
    stop_provider(corp)
    stop_provider(skewed)


@pytest.fixture
def settings(
    database_url: str, tmp_path: Path, providers: tuple[OpenIdProvider, OpenIdProvider]
) -> Settings:
    corp, skewed = providers
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        log_json=False,
        sqlite_synchronous="NORMAL",
        sso_providers=[
            SsoProvider(
                name="corp",
                title="Corp SSO",
                issuer=corp.issuer,
                client_id="parley-corp",
                client_secret=SECRET,
                scopes=["openid", "email", "profile", "groups"],
                role_claim="groups",
                roles={"chat-admins": "admin", "support": "operator"},
            ),
            SsoProvider(
                name="invite",
                issuer=corp.issuer,
                client_id="parley-invite",
                client_secret=SECRET,
                create_users=False,
            ),
            SsoProvider(
                name="skewed", issuer=skewed.issuer, client_id="parley-skewed", client_secret=SECRET
            ),
        ],
    )


class Browser:
    """Cookies per site, and redirects followed by hand to whichever site they name."""

    def __init__(self, app: FastAPI) -> None:
        self.parley = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PARLEY)
        self.other = httpx.AsyncClient(timeout=15)

    def _client(self, url: str) -> httpx.AsyncClient:
        return self.parley if url.startswith((PARLEY, "/")) else self.other

    async def go(self, url: str, *, method: str = "GET", **kw: Any) -> httpx.Response:
        return await self._client(url).request(method, url, **kw)

    async def to_callback(self, provider: str, login: str, next_path: str = "/calls") -> str:
        """Sign in at the provider; the callback URL it sends the browser to (not yet visited)."""
        response = await self.go(f"/v1/auth/sso/{provider}/login", params={"next": next_path})
        assert response.status_code == 302, response.text
        for _ in range(12):
            location = str(response.headers.get("location", ""))
            if response.status_code in (302, 303):
                url = str(response.url.join(location))
                if url.startswith(PARLEY):
                    return url
                response = await self.go(url)
            elif response.status_code == 200 and 'name="login"' in response.text:
                action = re.search(r'action="([^"]+)"', response.text)
                assert action, response.text
                response = await self.go(
                    str(response.url.join(action.group(1))), method="POST", data={"login": login}
                )
            else:
                raise AssertionError(f"{response.status_code} at {response.url}: {response.text}")
        raise AssertionError("too many redirects")

    async def finish(self, callback_url: str) -> httpx.Response:
        return await self.go(callback_url)

    async def sign_in(self, provider: str, login: str) -> dict[str, Any]:
        landed = await self.finish(await self.to_callback(provider, login))
        assert landed.status_code == 303, landed.text
        code = landed.headers["location"].split("#parley_login=", 1)[1]
        exchanged = await self.parley.post("/v1/auth/sso/exchange", json={"code": code})
        assert exchanged.status_code == 200, exchanged.text
        body: dict[str, Any] = exchanged.json()
        return body

    async def close(self) -> None:
        await self.parley.aclose()
        await self.other.aclose()


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[Browser]:
    found = Browser(app)
    yield found
    await found.close()


@pytest.fixture
async def second_browser(app: FastAPI) -> AsyncIterator[Browser]:
    found = Browser(app)
    yield found
    await found.close()


def me(browser: Browser, token: str) -> Any:
    return browser.parley.get("/v1/me", headers={"Authorization": f"Bearer {token}"})


async def test_providers_are_listed_for_the_sign_in_page(browser: Browser) -> None:
    listed = (await browser.parley.get("/v1/auth/sso/providers")).json()

    assert [(p["name"], p["title"]) for p in listed["providers"]] == [
        ("corp", "Corp SSO"),
        ("invite", "invite"),
        ("skewed", "skewed"),
    ]
    assert listed["providers"][0]["login_url"] == "/v1/auth/sso/corp/login"
    assert listed["password_login"] is True


async def test_the_redirect_to_the_provider_carries_pkce_state_and_nonce(
    browser: Browser, providers: tuple[OpenIdProvider, OpenIdProvider]
) -> None:
    response = await browser.parley.get("/v1/auth/sso/corp/login")

    location = urlsplit(response.headers["location"])
    query = {key: values[0] for key, values in parse_qs(location.query).items()}
    assert response.status_code == 302
    assert f"{location.scheme}://{location.netloc}" == providers[0].issuer
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) >= 43
    assert len(query["state"]) >= 20 and len(query["nonce"]) >= 20
    assert query["redirect_uri"] == f"{PARLEY}/v1/auth/sso/corp/callback"
    assert "openid" in query["scope"].split() and query["client_id"] == "parley-corp"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/v1/auth/sso/" in cookie


async def test_sign_in_makes_a_user_with_the_mapped_role_and_keeps_them(
    browser: Browser, second_browser: Browser
) -> None:
    first = await browser.sign_in("corp", "root")
    again = await second_browser.sign_in("corp", "root")
    who = await me(browser, first["token"])

    assert first["user"]["role"] == "admin"  # groups: chat-admins
    assert first["user"]["name"] == "root" and first["user"]["display_name"] == "Root"
    assert again["user"]["id"] == first["user"]["id"]
    assert again["token"] != first["token"]
    assert who.status_code == 200 and who.json()["id"] == first["user"]["id"]


async def test_a_verified_email_links_the_existing_user_and_the_provider_sets_the_role(
    browser: Browser, services: Services
) -> None:
    local = await services.identity.do_create_user(
        "alice.local", role=Role.OPERATOR, email="Alice@Corp.test"
    )

    signed_in = await browser.sign_in("corp", "alice")

    assert signed_in["user"]["id"] == local.id
    assert signed_in["user"]["role"] == "member"  # groups: staff, mapped to nothing
    assert await services.sso.identities.list_identities(local.id) == [("corp", "sub-alice")]
    from parley.core.audit import AuditFilter

    entries = await services.audit.search(None, AuditFilter(target_id=str(local.id)))
    assert [(e.actor, e.action) for e in entries] == [
        ("sso:corp", "user.role"),
        ("sso:corp", "sso.link"),
    ]
    assert entries[0].before == {"role": "operator"} and entries[0].after["role"] == "member"


async def test_an_unverified_email_links_no_one(browser: Browser, services: Services) -> None:
    bob = await services.identity.do_create_user("bob", email="bob@corp.test")

    mallory = await browser.sign_in("corp", "mallory")

    assert mallory["user"]["id"] != bob.id
    assert mallory["user"]["name"] == "mallory"


async def test_a_provider_that_may_not_create_users_refuses_strangers(
    browser: Browser, services: Services
) -> None:
    callback = await browser.to_callback("invite", "root")

    refused = await browser.finish(callback)

    assert_error(refused, 403, "ERR_SSO_NO_ACCOUNT")
    assert await services.identity.users.find_users_by_name(["root"]) == []


async def test_a_bad_state_is_refused(browser: Browser, second_browser: Browser) -> None:
    callback = await browser.to_callback("corp", "alice")
    tampered = re.sub(r"state=[^&]+", "state=forged-state-value", callback)

    results = {
        "forged": await browser.finish(tampered),
        "missing": await browser.finish(re.sub(r"&?state=[^&]+", "", callback)),
        "other browser": await second_browser.finish(callback),
    }
    # The state was taken by the other browser's attempt: it cannot be used again anywhere.
    results["after a foreign use"] = await browser.finish(callback)
    other = await browser.to_callback("corp", "alice")
    results["other provider"] = await browser.finish(other.replace("/sso/corp/", "/sso/skewed/"))

    for name, response in results.items():
        assert response.status_code == 400, (name, response.text)
        assert_error(response, 400, "ERR_SSO_STATE")


async def test_a_replayed_code_is_refused(browser: Browser) -> None:
    callback = await browser.to_callback("corp", "alice")
    first = await browser.finish(callback)
    code = parse_qs(urlsplit(callback).query)["code"][0]

    replay = await browser.finish(callback)
    # Same code again, under a fresh state of this browser: the provider refuses it.
    fresh = await browser.to_callback("corp", "alice")
    swapped = re.sub(r"code=[^&]+", f"code={code}", fresh)
    with_fresh_state = await browser.finish(swapped)

    assert first.status_code == 303, first.text
    assert_error(replay, 400, "ERR_SSO_STATE")
    error = assert_error(with_fresh_state, 401, "ERR_SSO_FAILED")
    assert "invalid_grant" in error["message"]


async def test_an_expired_id_token_is_refused(browser: Browser, services: Services) -> None:
    callback = await browser.to_callback("skewed", "alice")

    refused = await browser.finish(callback)

    error = assert_error(refused, 401, "ERR_SSO_FAILED")
    assert "expired" in error["message"]
    assert await services.identity.users.find_users_by_name(["alice"]) == []


async def test_a_login_code_is_good_once(browser: Browser) -> None:
    landed = await browser.finish(await browser.to_callback("corp", "alice"))
    code = landed.headers["location"].split("#parley_login=", 1)[1]

    first = await browser.parley.post("/v1/auth/sso/exchange", json={"code": code})
    second = await browser.parley.post("/v1/auth/sso/exchange", json={"code": code})

    assert landed.headers["location"].startswith("/calls#parley_login=")
    assert first.status_code == 200
    assert_error(second, 401, "ERR_INVALID_CREDENTIALS")


async def test_logout_revokes_the_token_and_ends_the_provider_session(
    browser: Browser, providers: tuple[OpenIdProvider, OpenIdProvider]
) -> None:
    token = (await browser.sign_in("corp", "alice"))["token"]
    auth = {"Authorization": f"Bearer {token}"}

    out = await browser.parley.post("/v1/auth/sso/logout", headers=auth)
    after = await me(browser, token)
    logout_url = out.json()["logout_url"]
    at_provider = await browser.go(logout_url)
    anonymous = await browser.parley.post("/v1/auth/sso/logout")

    assert out.status_code == 200, out.text
    assert logout_url.startswith(f"{providers[0].issuer}/session/end?")
    query = parse_qs(urlsplit(logout_url).query)
    assert query["client_id"] == ["parley-corp"]
    assert query["post_logout_redirect_uri"] == [f"{PARLEY}/"]
    assert_error(after, 401, "ERR_INVALID_CREDENTIALS")
    assert at_provider.status_code == 200 and "logout" in at_provider.text.lower()
    assert_error(anonymous, 401, "ERR_UNAUTHENTICATED")


async def test_next_must_stay_on_this_site_and_providers_must_exist(browser: Browser) -> None:
    for bad in ("//evil.example/", "https://evil.example/", "/\\evil.example", "calls"):
        response = await browser.parley.get("/v1/auth/sso/corp/login", params={"next": bad})
        assert_error(response, 422, "ERR_VALIDATION")
    assert_error(await browser.parley.get("/v1/auth/sso/nope/login"), 404, "ERR_NOT_FOUND")
    exchange = await browser.parley.post("/v1/auth/sso/exchange", json={"code": ""})
    assert_error(exchange, 422, "ERR_VALIDATION")


async def test_no_code_state_or_token_reaches_a_log_line(
    browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    callback = await browser.to_callback("corp", "alice")
    landed = await browser.finish(callback)
    login_code = landed.headers["location"].split("#parley_login=", 1)[1]
    token = (await browser.parley.post("/v1/auth/sso/exchange", json={"code": login_code})).json()[
        "token"
    ]
    await browser.parley.post("/v1/auth/sso/logout", headers={"Authorization": f"Bearer {token}"})

    # The test's own browser (the `httpx` logger) logs the URLs it visits; Parley is the rest.
    parley_records = [r for r in caplog.records if r.name != "httpx"]
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in parley_records)
    query = parse_qs(urlsplit(callback).query)
    secrets = [query["code"][0], query["state"][0], login_code, token, SECRET]
    assert "sso sign-in" in logged  # the sign-in itself is logged, without its credentials
    assert [s for s in secrets if s in logged] == []


async def test_password_login_can_be_switched_off(
    settings: Settings, people: Any, app: FastAPI
) -> None:
    settings.password_login = False
    person = await people.add()

    refused = await people.client().post(
        "/v1/auth/login", json={"name": person.user.name, "password": "pw-" + person.user.name}
    )

    assert_error(refused, 403, "ERR_FORBIDDEN")
    assert (await person.http.get("/v1/me")).status_code == 200  # API tokens keep working
