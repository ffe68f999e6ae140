"""The rollout over REST: walking off → full, refusal on HOLD, the decision log, and the hard
stop a real client's duplicate report trips (with the webhook it calls) — SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from parley.assembly import Services
from parley.core.models import Role
from parley.settings import Settings
from tests.conftest import PeopleFactory, Person
from tests.support.servers import free_port
from tests.support.streams import eventually

FAST = {
    "release_dwell_canary_1_seconds": 0,
    "release_dwell_canary_10_seconds": 0,
    "release_dwell_canary_50_seconds": 0,
    "release_min_messages": 0,
    "release_min_sessions": 0,
    # The watcher ticks only when a report carries a P0 counter: tests decide when it looks.
    "release_watch_seconds": 3600,
}


class Receiver:
    """A real HTTP server on loopback that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bodies: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/release"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        self.bodies.append({"path": scope["path"], **json.loads(b"".join(chunks))})
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    server = uvicorn.Server(
        uvicorn.Config(hook, host="127.0.0.1", port=hook.port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, what="the webhook receiver to start")
    yield hook
    server.should_exit = True
    await task


@pytest.fixture
def release_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings(
    database_url: str, tmp_path: Path, release_settings: dict[str, Any], receiver: Receiver
) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        log_json=False,
        sqlite_synchronous="NORMAL",
        release_webhook_url=receiver.url,
        **{**FAST, **release_settings},
    )


async def _post(person: Person, path: str, expect: int = 200, **body: Any) -> dict[str, Any]:
    response = await person.http.post(f"/v1/admin/release/{path}", json=body)
    assert response.status_code == expect, response.text
    return dict(response.json())


async def _history(person: Person, limit: int = 50) -> list[dict[str, Any]]:
    response = await person.http.get("/v1/admin/release/history", params={"limit": limit})
    assert response.status_code == 200, response.text
    return list(response.json())


async def _report(person: Person, samples: int = 2, **counters: int) -> None:
    response = await person.http.post(
        "/v1/stream/report",
        json={
            "transport": "ws",
            "counters": counters,
            "write_receipt_ms": [35.0 + i for i in range(samples)],
        },
    )
    assert response.status_code == 204, response.text


async def test_a_release_walks_from_off_to_full_and_every_step_is_logged(
    people: PeopleFactory,
) -> None:
    ops, member = await people.add(role=Role.ADMIN), await people.add()
    assert (await ops.http.get("/v1/admin/release")).json()["stage"] == "off"

    stages = []
    for _ in range(4):
        moved = await _post(ops, "promote", owner="release-owner", reason="gates green")
        stages.append((moved["state"]["stage"], moved["state"]["percentage"]))
    flags = (await member.http.get("/v1/flags")).json()["flags"]

    assert stages == [("canary_1", 1), ("canary_10", 10), ("canary_50", 50), ("full", 100)]
    assert flags["chat_full_release"] == {"value": True, "reason": "percentage"}
    log = await _history(ops)
    assert [(e["from_stage"], e["to_stage"]) for e in reversed(log)] == [
        ("off", "canary_1"),
        ("canary_1", "canary_10"),
        ("canary_10", "canary_50"),
        ("canary_50", "full"),
    ]
    for entry in log:
        assert entry["decision"] == "PROCEED"
        assert entry["owner"] == "release-owner"
        assert entry["actor"] == ops.user.name
        assert entry["at"].endswith("Z")
        assert entry["gates"]["gate_p0_ok"] is True
        assert entry["gates"]["rollout_decision"] == "PROCEED"
    assert (await ops.http.post("/v1/admin/release/promote", json={})).status_code == 409


@pytest.mark.parametrize("release_settings", [{"release_min_messages": 5}])
async def test_promotion_is_refused_on_hold_and_an_override_is_recorded_as_such(
    people: PeopleFactory,
) -> None:
    ops, member = await people.add(role=Role.ADMIN), await people.add()
    waiting = await ops.http.post("/v1/admin/release/promote", json={})
    assert "baseline has 0 of 5 messages" in waiting.json()["error"]["message"]
    await _report(member, samples=5)  # the current version, measured: off → canary_1 may go
    await _post(ops, "promote")

    refused = await ops.http.post("/v1/admin/release/promote", json={"owner": "ana"})
    forced = await _post(ops, "promote", owner="ana", override=True, reason="vendor demo")

    error = refused.json()["error"]
    assert refused.status_code == 409
    assert error["code"] == "ERR_GATES_NOT_PASSED"
    assert "HOLD" in error["message"] and "not enough messages yet" in error["message"]
    assert forced["state"]["stage"] == "canary_10"
    newest, refusal = (await _history(ops))[:2]
    assert (refusal["from_stage"], refusal["to_stage"], refusal["decision"]) == (
        "canary_1",
        "canary_10",  # the stage asked for; it stayed canary_1
        "HOLD",
    )
    assert refusal["refused"] is True and newest["refused"] is False
    assert refusal["override"] is False and "refused" in refusal["reason"]
    assert newest["override"] is True
    assert newest["decision"] == "HOLD"
    assert newest["reason"] == "ADMIN OVERRIDE of HOLD: vendor demo"
    assert newest["owner"] == "ana"


@pytest.mark.parametrize("release_settings", [{"release_dwell_canary_1_seconds": 3600}])
async def test_gates_report_dwell_and_data_per_cohort(people: PeopleFactory) -> None:
    ops, member = await people.add(role=Role.ADMIN), await people.add()
    await _post(ops, "promote")
    await _report(member)

    gates = (await ops.http.get("/v1/admin/release/gates")).json()

    assert gates["stage"] == "canary_1"
    assert gates["rollout_decision"] == "HOLD"
    assert gates["gate_rollout_ok"] is False
    assert any(r.startswith("dwell: ") and "of 1h00m in canary_1" in r for r in gates["reasons"])
    cohorts = gates["cohorts"]
    assert cohorts["canary"]["reports"] + cohorts["baseline"]["reports"] == 1
    assert cohorts["canary"]["messages"] + cohorts["baseline"]["messages"] == 2


async def test_a_duplicate_reported_by_three_canary_clients_trips_the_kill_switch_by_itself(
    people: PeopleFactory, services: Services, receiver: Receiver
) -> None:
    ops = await people.add(role=Role.ADMIN)
    members = [await people.add() for _ in range(3)]  # PARLEY_RELEASE_P0_MIN_REPORTERS
    member = members[0]
    for _ in range(4):
        await _post(ops, "promote", owner="ana")  # full: every client is in the canary cohort

    for reporter in members:
        await _report(reporter, timeline_duplicate_detected=1)

    state = await eventually(
        lambda: _killed(ops), what="the watcher to trip the kill switch", timeout=20
    )
    assert state["stage"] == "canary_1"
    assert state["actor"] == "watcher"
    assert state["reason"].startswith("hard stop: p0 invariant breach: timeline_duplicate_detected")
    kill = (await _history(ops))[0]
    assert (kill["action"], kill["from_stage"], kill["to_stage"]) == ("kill", "full", "canary_1")
    assert kill["decision"] == "ROLLBACK" and kill["killed"] is True
    assert kill["gates"]["gate_p0_ok"] is False
    flags = (await member.http.get("/v1/flags")).json()["flags"]
    assert flags["chat_full_release"] == {"value": False, "reason": "off"}
    hook = await eventually(lambda: receiver.bodies, what="the webhook call")
    assert hook[0]["event"] == "release.killed"
    assert hook[0]["state"]["killed"] is True
    assert "timeline_duplicate_detected" in hook[0]["reasons"][0]
    metrics = (await ops.http.get("/metrics")).text
    assert 'parley_release_kills_total{trigger="watcher"}' in metrics


async def _killed(ops: Person) -> dict[str, Any] | None:
    state = (await ops.http.get("/v1/admin/release")).json()
    return dict(state) if state["killed"] else None


async def test_kill_resume_hold_and_abort_move_the_release_flag(people: PeopleFactory) -> None:
    ops = await people.add(role=Role.ADMIN)
    for _ in range(3):
        await _post(ops, "promote")

    killed = await _post(ops, "kill", reason="support tickets spiking")
    refused = await ops.http.post("/v1/admin/release/promote", json={})
    resumed = await _post(ops, "resume", reason="fixed in config")
    await _post(ops, "promote")
    held = await _post(ops, "hold", reason="investigating latency")
    aborted = await _post(ops, "abort")

    assert (killed["state"]["stage"], killed["state"]["killed"]) == ("canary_1", True)
    assert killed["state"]["reason"] == "support tickets spiking"
    assert refused.status_code == 409 and "kill_switch" in refused.json()["error"]["message"]
    assert (resumed["state"]["stage"], resumed["state"]["killed"]) == ("canary_1", False)
    assert held["state"]["stage"] == "canary_1"
    assert (aborted["state"]["stage"], aborted["state"]["percentage"]) == ("off", 0)
    actions = [e["action"] for e in reversed(await _history(ops))]
    assert actions == [
        "promote",
        "promote",
        "promote",
        "kill",
        "promote",  # the refusal
        "resume",
        "promote",
        "hold",
        "abort",
    ]


async def test_only_admins_see_or_move_the_release(people: PeopleFactory) -> None:
    member = await people.add()

    assert (await member.http.get("/v1/admin/release")).status_code == 403
    assert (await member.http.post("/v1/admin/release/kill", json={})).status_code == 403


async def test_the_export_holds_state_gates_and_the_whole_log(people: PeopleFactory) -> None:
    ops = await people.add(role=Role.ADMIN)
    await _post(ops, "promote")
    await _post(ops, "kill")

    exported = (await ops.http.get("/v1/admin/release/export")).json()

    assert exported["state"]["killed"] is True
    assert exported["gates"]["rollout_decision"] == "HOLD"
    assert [e["action"] for e in exported["history"]] == ["kill", "promote"]


async def test_the_hard_stop_happens_once_however_many_watchers_see_the_breach(
    people: PeopleFactory, services: Services
) -> None:
    ops = await people.add(role=Role.ADMIN)
    rollout = services.release.rollout
    gates = await rollout.compute_gates()
    assert (await rollout.do_hard_stop(reason="hard stop: off", gates=gates))[1] is False
    await _post(ops, "promote")

    results = await asyncio.gather(
        *(rollout.do_hard_stop(reason="hard stop: p0", gates=gates) for _ in range(3))
    )

    assert sorted(moved for _, moved in results) == [False, False, True]
    kills = [e for e in await _history(ops) if e["action"] == "kill"]
    assert len(kills) == 1 and kills[0]["actor"] == "watcher"
