"""Attack: an ordinary member stops a release with forged client reports (`POST
/v1/stream/report` with a P0 counter during a canary). One account — however many tokens or
reports — raises an alert and a HOLD, never a kill; reports are rate-limited per user and stored
with who sent them; distinct users corroborating still stop a bad release (seed 004)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from parley.core.models import Role
from parley.storage.schema import release_client_reports
from tests.conftest import _blocking
from tests.security.conftest import Account, Deployment, deployment, error_code, metric
from tests.support.waiting import eventually
from tests.support.widget_cluster import database_services

RELEASE = {
    "PARLEY_RELEASE_DWELL_CANARY_1_SECONDS": "0",
    "PARLEY_RELEASE_DWELL_CANARY_10_SECONDS": "0",
    "PARLEY_RELEASE_DWELL_CANARY_50_SECONDS": "0",
    "PARLEY_RELEASE_MIN_MESSAGES": "0",
    "PARLEY_RELEASE_MIN_SESSIONS": "0",
    "PARLEY_RELEASE_REPORT_RATE_PER_USER": "5/minute",
}
# What the JS client posts every 10 s, with a P0 counter set by hand.
FORGED = {
    "transport": "ws",
    "counters": {"timeline_duplicate_detected": 1_000_000, "ack_without_receipt_10s": 7},
    "write_receipt_ms": [12.5],
}


@pytest.fixture
def release(tmp_path: Path) -> Iterator[Deployment]:
    with deployment(tmp_path, **RELEASE) as found:
        yield found


async def _at_full(d: Deployment) -> Account:
    admin = d.add(Role.ADMIN)
    async with d.client(admin) as http:
        for _ in range(4):  # off → canary_1 → canary_10 → canary_50 → full
            moved = await http.post("/v1/admin/release/promote", json={"owner": "ana"})
            assert moved.status_code == 200, moved.text
    return admin


async def _state(d: Deployment, admin: Account) -> dict[str, Any]:
    async with d.client(admin) as http:
        return dict((await http.get("/v1/admin/release")).json())


async def _login(d: Deployment, account: Account) -> str:
    async with d.client() as http:
        response = await http.post(
            "/v1/auth/login", json={"name": account.name, "password": account.password}
        )
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


async def test_one_member_with_many_tokens_raises_an_alert_and_a_hold_never_a_kill(
    release: Deployment,
) -> None:
    admin, mallory = await _at_full(release), release.add()
    tokens = [mallory.token, await _login(release, mallory), await _login(release, mallory)]

    for n, token in enumerate(tokens):
        async with httpx.AsyncClient(
            base_url=release.url, headers={"Authorization": f"Bearer {token}"}
        ) as curl:
            response = await curl.post("/v1/stream/report", json=FORGED)
        assert response.status_code == 204, (n, response.text)
    await eventually(
        lambda: metric(release, "parley_release_p0_alerts_total"),
        what="the watcher to raise the P0 alert",
    )

    state = await _state(release, admin)
    assert (state["stage"], state["killed"]) == ("full", False)
    async with release.client(admin) as http:
        gates = (await http.get("/v1/admin/release/gates")).json()
        history = (await http.get("/v1/admin/release/history")).json()
        flags = (await http.get("/v1/flags")).json()["flags"]
    assert gates["rollout_decision"] == "HOLD"
    assert gates["gate_p0_ok"] is False
    assert any("held until corroborated" in reason for reason in gates["reasons"])
    assert any(f"by 1 user(s) #{mallory.id}" in reason for reason in gates["reasons"])
    assert [entry["action"] for entry in history] == ["promote"] * 4  # no kill, no hold logged
    assert flags["chat_full_release"]["value"] is True
    assert await metric(release, "parley_release_p0_reporters") == 1


async def test_each_report_is_stored_with_who_sent_it(release: Deployment) -> None:
    await _at_full(release)
    mallory = release.add()

    async with release.client(mallory, source="127.0.0.5") as curl:
        assert (await curl.post("/v1/stream/report", json=FORGED)).status_code == 204
    rows = await eventually(lambda: _stored_reports(release), what="the report to be stored")

    (row,) = rows
    assert row["user_id"] == mallory.id
    assert row["client_ip"] == "127.0.0.5"
    assert row["token_id"] is not None


def _stored(release: Deployment) -> list[dict[str, Any]]:
    """The stored client reports, read as an operator would with SQL."""
    found: list[dict[str, Any]] = []
    t = release_client_reports.c

    async def read() -> None:
        async with (
            database_services(release.database_url, release.workdir) as services,
            services.db.read() as conn,
        ):
            rows = await conn.execute(select(t.user_id, t.token_id, t.client_ip))
            found.extend(dict(r._mapping) for r in rows)

    _blocking(read())
    return found


async def _stored_reports(release: Deployment) -> list[dict[str, Any]]:
    return _stored(release)


async def test_reports_past_the_per_user_rate_are_refused_and_not_stored(
    release: Deployment,
) -> None:
    await _at_full(release)
    mallory, alice = release.add(), release.add()
    statuses = []
    async with release.client(mallory) as curl:
        for _ in range(8):
            response = await curl.post("/v1/stream/report", json=FORGED)
            statuses.append(response.status_code)
    async with release.client(alice) as other:
        honest = await other.post("/v1/stream/report", json={"transport": "sse"})

    assert statuses == [204] * 5 + [429] * 3
    assert error_code(response) == "ERR_RATE_LIMITED"
    assert int(response.headers["Retry-After"]) >= 1
    assert honest.status_code == 204  # the limit is per user
    rows = await eventually(
        lambda: _stored_reports_when(release, 6), what="the accepted reports to be stored"
    )
    assert sum(1 for r in rows if r["user_id"] == mallory.id) == 5


async def _stored_reports_when(release: Deployment, count: int) -> list[dict[str, Any]] | None:
    rows = _stored(release)
    return rows if len(rows) >= count else None


async def test_p0_reports_from_three_distinct_users_still_stop_a_bad_release(
    release: Deployment,
) -> None:
    admin = await _at_full(release)
    reporters = [release.add() for _ in range(3)]  # PARLEY_RELEASE_P0_MIN_REPORTERS

    for account in reporters:
        async with release.client(account) as client:
            body = {"transport": "ws", "counters": {"timeline_duplicate_detected": 1}}
            assert (await client.post("/v1/stream/report", json=body)).status_code == 204

    state = await eventually(
        lambda: _killed(release, admin), what="the watcher to trip the kill switch"
    )
    assert state["actor"] == "watcher" and state["stage"] == "canary_1"
    assert "3 user(s)" in state["reason"]


async def _killed(d: Deployment, admin: Account) -> dict[str, Any] | None:
    state = await _state(d, admin)
    return state if state["killed"] else None
