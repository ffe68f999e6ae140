"""Attack: guessing passwords. 60 wrong passwords for one name (one by one and all at once),
then the right one; a spray of one password across 40 names from one address; the same spray
with a forged X-Forwarded-For per request. Each is cut off with 429 + Retry-After.

The per-address limit is set to 12/minute here (default 30) only to spend fewer Argon2
verifications (~0.5 s of CPU each on this box); the per-account one is the default 10/minute.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.security.conftest import Deployment, deployment, error_code

PER_IP = 12


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(
        tmp_path_factory.mktemp("logins"), PARLEY_AUTH_LOGIN_RATE_PER_IP=f"{PER_IP}/minute"
    ) as found:
        yield found


async def _login(
    http: httpx.AsyncClient, name: str, password: str, **headers: str
) -> httpx.Response:
    return await http.post(
        "/v1/auth/login", json={"name": name, "password": password}, headers=headers
    )


async def test_sixty_wrong_passwords_for_one_name_lock_it_even_against_the_right_one(
    shared: Deployment,
) -> None:
    victim = shared.add()
    async with shared.client(source="127.0.0.11") as curl:
        tries = [await _login(curl, victim.name, f"guess-{n}") for n in range(60)]
        right = await _login(curl, victim.name, victim.password)

    statuses = [r.status_code for r in tries]
    assert statuses[:10] == [401] * 10  # PARLEY_AUTH_LOGIN_RATE_PER_ACCOUNT=10/minute
    assert set(statuses[10:]) == {429}
    assert error_code(tries[-1]) == "ERR_RATE_LIMITED"
    assert 1 <= int(tries[-1].headers["Retry-After"]) <= 60
    assert right.status_code == 429
    assert "token" not in right.json()


async def test_concurrent_guesses_cannot_slip_past_the_account_limit(shared: Deployment) -> None:
    victim = shared.add()
    async with shared.client(source="127.0.0.12") as curl:
        tries = await asyncio.gather(*(_login(curl, victim.name, f"g{n}") for n in range(40)))

    statuses = sorted(r.status_code for r in tries)
    assert statuses.count(401) == 10
    assert statuses.count(429) == 30


async def test_a_spray_across_forty_names_from_one_address_is_limited(shared: Deployment) -> None:
    names = [f"staff-{n}" for n in range(40)]  # real or not, each guess counts
    bystander = shared.add()
    async with shared.client(source="127.0.0.13") as curl:
        tries = [await _login(curl, name, "Summer2026!") for name in names]
        own = await _login(curl, bystander.name, bystander.password)

    statuses = [r.status_code for r in tries]
    assert statuses[:PER_IP] == [401] * PER_IP
    assert set(statuses[PER_IP:]) == {429}
    assert own.status_code == 429  # the address is cut off, whoever it signs in as


async def test_a_forged_forwarded_for_does_not_reset_the_address_limit(shared: Deployment) -> None:
    names = [f"admin-{n}" for n in range(PER_IP + 5)]
    async with shared.client(source="127.0.0.14") as curl:
        tries = [
            await _login(curl, name, "Summer2026!", **{"X-Forwarded-For": f"198.51.100.{n}"})
            for n, name in enumerate(names)
        ]

    assert [r.status_code for r in tries][PER_IP:] == [429] * 5


async def test_another_address_and_account_still_sign_in(shared: Deployment) -> None:
    user = shared.add()
    async with shared.client(source="127.0.0.15") as browser:
        response = await _login(browser, user.name, user.password)

    assert response.status_code == 200, response.text
    assert response.json()["token"].startswith("pk_")
