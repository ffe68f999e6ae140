"""Go/No-Go and smoke against a development setup (embedded SQLite, no Redis): GO for its own
profile, NO-GO for production naming every reason; smoke; a deployment that is down; plus what
needs a live server: the OpenFeature provider's sync path and CLI flag changes reaching clients.
The production self-test, one broken thing at a time, is test_gonogo_selftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from parley.features.release.gonogo import Plan, SignOff, Target, gonogo, smoke
from parley.features.release.probes import Status
from tests.support.servers import ServerProcess, free_port
from tests.support.streams import WsReader

ENV = {
    "PARLEY_LOG_JSON": "false",
    "PARLEY_DATABASE_URL": "",
    "PARLEY_RELEASE_WATCH_SECONDS": "0.3",
}
SIGNED = SignOff(release_owner="ana", rollback_owner="ben", incident_owner="cy")


@dataclass
class Live:
    server: ServerProcess
    workdir: Path
    env: dict[str, str]
    admin: str
    member: str

    @property
    def target(self) -> Target:
        return Target(self.server.url, self.admin, self.member, self.admin)

    @property
    def plan(self) -> Plan:
        """The checkout under test, deployed as PARLEY_GIT_SHA says."""
        return Plan(
            target_ref=self.env["PARLEY_GIT_SHA"],
            rollback_ref=self.env["PARLEY_GIT_SHA"] + "~1",
            main_ref="",
            repo=REPO,
            excluded={"web_e2e": "browser suite runs in CI"},
        )

    def parley(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "parley", *args],
            cwd=self.workdir,
            env={**os.environ, **self.env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
        )


REPO = Path(__file__).parents[2]


def _head() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _start(workdir: Path) -> Live:
    env = {
        **ENV,
        "PARLEY_DATA_DIR": str(workdir / "var"),
        "PARLEY_GIT_SHA": _head(),
        "PARLEY_RELEASE_MIN_MESSAGES": "20",
        "PARLEY_RELEASE_MIN_SESSIONS": "1",
    }
    server = ServerProcess(port=free_port(), workdir=workdir, env=env)
    live = Live(server, workdir, env, "", "")
    live.admin = live.parley("user", "add", "ops", "--role", "admin").stdout.split()[-1]
    live.member = live.parley("user", "add", "mia").stdout.split()[-1]
    server.start()
    return live


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    deployment = _start(tmp_path_factory.mktemp("gonogo"))
    yield deployment
    deployment.server.stop()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Live]:
    deployment = _start(tmp_path)
    yield deployment
    deployment.server.stop()


async def test_a_development_setup_is_go_for_itself_and_no_go_for_production(
    live: Live,
) -> None:
    embedded = await gonogo(live.target, SIGNED, live.plan)
    production = await gonogo(replace(live.target, profile="production"), SIGNED, live.plan)

    assert embedded.profile == "embedded"  # loopback: what the deployment says it is
    assert embedded.go, embedded.reasons
    assert production.decision == "NO-GO"
    red = {c.name for c in production.checks if c.status is Status.FAIL}
    # the "development setup gets GO for production", now each reason on record
    assert red == {
        "sign_off",
        "database",
        "redis",
        "secrets",
        "inboxes_enabled",
        "alert_receivers",
        "backups",
    }
    assert "legal sign-off (--legal)" in production.check("sign_off").evidence  # type: ignore[union-attr]


async def test_without_an_admin_token_the_record_says_what_is_missing(live: Live) -> None:
    verdict = await gonogo(Target(live.server.url, live.admin, live.member), SIGNED, live.plan)

    assert verdict.decision == "NO-GO"
    admin = verdict.check("admin")
    assert admin is not None and admin.status is Status.FAIL
    assert "no --admin-token" in admin.evidence
    assert {c.name for c in verdict.checks if c.status is Status.SKIP} == {"gates", "configuration"}


async def test_a_deployment_that_is_down_fails_health_and_runs_nothing_else(
    fresh: Live,
) -> None:
    fresh.server.stop()

    verdict = await gonogo(fresh.target, SIGNED, fresh.plan)

    assert {c.name for c in verdict.checks if c.status is Status.FAIL} == {"health"}
    skipped = [c for c in verdict.checks if c.status is Status.SKIP]
    assert len(skipped) >= 10
    assert all("health failed" in c.evidence for c in skipped)


async def test_smoke_passes_on_a_healthy_deployment(live: Live) -> None:
    verdict = await smoke(live.target)

    assert verdict.go, verdict.reasons
    assert [c.name for c in verdict.checks] == [
        "health",
        "accounts",
        "delivery_ws",
        "delivery_sse",
        "delivery_poll",
        "receipts",
        "reconnect",
        "sso",
        "calls",
    ]


def test_the_openfeature_provider_evaluates_over_http(live: Live) -> None:
    from openfeature.evaluation_context import EvaluationContext

    from parley.features.release.openfeature import ParleyProvider

    live.parley("release", "flag", "dispute_tools_v2", "--on")
    provider = ParleyProvider(live.server.url, live.admin)
    try:
        mine = provider.resolve_boolean_details("dispute_tools_v2", True)
        missing = provider.resolve_boolean_details("nope", False, EvaluationContext())
    finally:
        provider.shutdown()

    assert (mine.value, mine.reason) == (False, "TARGETING_MATCH")
    assert mine.flag_metadata == {"parley_reason": "role"}
    assert missing.error_code == "FLAG_NOT_FOUND"


async def test_a_flag_changed_from_the_cli_reaches_connected_clients(live: Live) -> None:
    reader = await WsReader(live.server.url, live.member).opened()
    try:
        changed = live.parley("release", "flag", "chat_dark_launch", "--on", "--actor", "ops")
        assert changed.returncode == 0, changed.stdout + changed.stderr
        event = await reader.wait_for_event(lambda e: e["type"] == "flags.updated")
    finally:
        await reader.close()

    assert event["revision"] > 1
    async with httpx.AsyncClient(base_url=live.server.url) as http:
        flags = (
            await http.get("/v1/flags", headers={"Authorization": f"Bearer {live.member}"})
        ).json()["flags"]
    assert flags["chat_dark_launch"] == {"value": False, "reason": "internal_only"}


async def test_smoke_fails_when_the_deployment_is_down(fresh: Live) -> None:
    fresh.server.stop()

    verdict = await smoke(fresh.target)

    assert not verdict.go
    assert all(not check.ok for check in verdict.checks)
    assert verdict.checks[-1].evidence == "skipped: health failed"
