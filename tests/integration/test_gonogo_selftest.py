"""Go/No-Go's self-test: a production-ready deployment (PostgreSQL, its own Redis, secrets,
alert routing, an inbox) is GO; then each test breaks exactly one thing and asserts that exactly
that check — and no other — turns red. Skipped checks count only when the broken one is what
they needed. One server process serves every test here; each test puts things back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
import httpx
import pytest

from parley.features.release.gonogo import Plan, SignOff, Target, Verdict, gonogo
from parley.features.release.probes import Status
from parley.features.release.relay import serving
from parley.storage.migrate import head_revision
from tests.conftest import PostgresDatabases
from tests.support.proxy import Breakage, BreakingProxy
from tests.support.servers import ServerProcess, free_port

pytestmark = pytest.mark.postgres

SIGNED = SignOff("ana", "ben", "cy", qa="quinn", product="pat", legal="lee")
ALERTMANAGER = """\
route:
  receiver: oncall
  routes:
    - matchers: ['severity="critical"']
      receiver: pager
receivers:
  - name: oncall
    email_configs:
      - to: oncall@shop.example.net
  - name: pager
    webhook_configs:
      - url: https://pager.shop.example.net/hook
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@dataclass
class Repo:
    path: Path
    older: str  # c0: an older known-good commit
    rollback: str  # c1
    target: str  # c2: origin/main, deployed
    hack: str  # c3 on origin/mainline-hack, branched from c2


def make_repo(path: Path) -> Repo:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.net")
    git(path, "config", "user.name", "t")
    shas = []
    for message in ("c0", "c1", "c2"):
        git(path, "commit", "-q", "--allow-empty", "-m", message)
        shas.append(git(path, "rev-parse", "HEAD"))
    git(path, "update-ref", "refs/remotes/origin/main", shas[2])
    git(path, "checkout", "-q", "-b", "mainline-hack")
    git(path, "commit", "-q", "--allow-empty", "-m", "c3")
    hack = git(path, "rev-parse", "HEAD")
    git(path, "update-ref", "refs/remotes/origin/mainline-hack", hack)
    return Repo(path, shas[0], shas[1], shas[2], hack)


class PrivateRedis:
    """A redis-server of this module's own, so a test may stop it (never the shared one)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        for _ in range(100):
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    client.close()
                    return
            subprocess.run(["sleep", "0.05"], check=True)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class Prod:
    server: ServerProcess
    redis: PrivateRedis
    repo: Repo
    database_url: str
    alertmanager: Path
    admin: str
    member: str
    inbox_id: int
    env: dict[str, str]

    @property
    def plan(self) -> Plan:
        return Plan(
            target_ref=f"origin/main@{self.repo.target[:8]}",
            rollback_ref=self.repo.rollback,
            main_ref="origin/main",
            repo=self.repo.path,
            results={"web_e2e": ("PASS", "ci run 4711")},
        )

    def target(self, url: str | None = None) -> Target:
        return Target(url or self.server.url, self.admin, self.member, self.admin, "production")

    def parley(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "parley", *args],
            cwd=self.server.workdir,
            env={**os.environ, **self.env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=180,
        )

    async def admin_call(self, method: str, path: str, **kw: object) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.server.url) as http:
            headers = {"Authorization": f"Bearer {self.admin}"}
            return await http.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def prod(
    tmp_path_factory: pytest.TempPathFactory, postgres_databases: PostgresDatabases
) -> Iterator[Prod]:
    workdir = tmp_path_factory.mktemp("prod")
    repo = make_repo(workdir / "repo")
    redis_server = PrivateRedis(workdir)
    redis_server.start()
    alertmanager = workdir / "alertmanager.yml"
    alertmanager.write_text(ALERTMANAGER)
    database_url = postgres_databases.fresh_blocking()
    env = {
        "PARLEY_LOG_JSON": "false",
        "PARLEY_DATA_DIR": str(workdir / "var"),
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_REDIS_URL": redis_server.url,
        "PARLEY_SECRET_KEY": secrets.token_hex(32),
        "PARLEY_ALERTMANAGER_CONFIG": str(alertmanager),
        "PARLEY_RELEASE_WEBHOOK_URL": "https://hooks.shop.example.net/release",
        "PARLEY_GIT_SHA": repo.target,
        "PARLEY_RELEASE_WATCH_SECONDS": "0.3",
        "PARLEY_RELEASE_MIN_MESSAGES": "20",
        "PARLEY_RELEASE_MIN_SESSIONS": "1",
        "PARLEY_HEAD_POLL_SECONDS": "0.1",
    }
    server = ServerProcess(port=free_port(), workdir=workdir, env=env, args=["--migrate"])
    deployment = Prod(server, redis_server, repo, database_url, alertmanager, "", "", 0, env)
    deployment.admin = deployment.parley("user", "add", "ops", "--role", "admin").stdout.split()[-1]
    deployment.member = deployment.parley("user", "add", "mia").stdout.split()[-1]
    server.start()
    made = asyncio.run(
        deployment.admin_call(
            "POST",
            "/v1/admin/inboxes",
            json={
                "name": "Shop",
                "allowed_domains": ["shop.example.net"],
                "operators": ["ops"],
                "privacy_url": "https://shop.example.net/privacy",
            },
        )
    )
    assert made.status_code == 201, made.text
    deployment.inbox_id = int(made.json()["id"])
    backed_up = deployment.parley("backup")  # production wants a fresh verified backup
    assert backed_up.returncode == 0, backed_up.stdout + backed_up.stderr
    yield deployment
    server.stop()
    redis_server.stop()


def red(verdict: Verdict) -> set[str]:
    return {c.name for c in verdict.checks if c.status is Status.FAIL}


def assert_only(verdict: Verdict, name: str) -> None:
    """`name` failed, nothing else did, and whatever did not run needed `name`."""
    assert verdict.decision == "NO-GO"
    assert red(verdict) == {name}, [(c.name, c.evidence) for c in verdict.checks if not c.ok]
    skipped = [c for c in verdict.checks if c.status is Status.SKIP]
    assert all(f"{name} failed" in c.evidence for c in skipped), skipped


@contextlib.asynccontextmanager
async def behind(prod: Prod, breakage: Breakage) -> AsyncIterator[str]:
    async with serving(BreakingProxy(prod.server.url, breakage)) as url:
        yield url


async def go(prod: Prod, url: str | None = None, **plan: object) -> Verdict:
    return await gonogo(prod.target(url), SIGNED, replace(prod.plan, **plan))  # type: ignore[arg-type]


# -- the healthy deployment --------------------------------------------------------------------


def test_a_production_ready_deployment_is_go_and_the_record_says_why(
    prod: Prod, tmp_path: Path
) -> None:
    result = prod.parley(
        "gonogo",
        *("--url", prod.server.url, "--token", prod.admin, "--peer-token", prod.member),
        *("--admin-token", prod.admin, "--profile", "production"),
        *("--release-owner", "ana", "--rollback-owner", "ben", "--incident-owner", "cy"),
        *("--qa", "quinn", "--product", "pat", "--legal", "lee"),
        *("--target-ref", f"origin/main@{prod.repo.target[:8]}"),
        *("--rollback-ref", prod.repo.rollback[:8], "--repo", str(prod.repo.path)),
        *("--test-deploy-sha", prod.repo.target[:8], "--result", "web_e2e=PASS:ci run 4711"),
        *("--out", str(tmp_path)),
    )

    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(next(tmp_path.glob("gonogo-*.json")).read_text())
    assert record["decision"] == "GO" and record["reasons"] == []
    assert record["profile"] == "production"
    results = {c["name"]: c["result"] for c in record["checks"]}
    assert {n for n, r in results.items() if r != "PASS"} == {"sso", "call_relay", "tls"}
    assert results["tls"] == "EXCLUDED"  # plain http on loopback: nothing to check
    assert record["approval"]["target_sha"] == prod.repo.target
    assert record["approval"]["deployed_sha"] == prod.repo.target
    assert record["approval"]["legal_signoff"] == "lee"
    assert record["areas"]["realtime"]["result"] == "PASS"
    assert record["areas"]["reconnect"]["result"] == "PASS"
    assert record["areas"]["sso"]["result"] == "EXCLUDED"
    assert record["recheck_utc"] is None
    gates = next(c for c in record["checks"] if c["name"] == "gates")
    assert "rollout_decision=PROCEED" in gates["evidence"]
    assert "the burst's reports reached the gates" in gates["evidence"]
    assert record["probe"]["wrote"]["messages"] >= 30
    markdown = next(tmp_path.glob("gonogo-*.md")).read_text()
    assert "**Decision: GO**" in markdown and "| Legal sign-off | lee |" in markdown


async def test_runs_reuse_one_probe_conversation_and_trim_it(prod: Prod) -> None:
    first = await go(prod)
    second = await go(prod)

    assert first.go and second.go, second.reasons
    assert first.probe["conversation_id"] == second.probe["conversation_id"]
    assert second.probe["trimmed"]["kept_from_seq"] > 1  # older runs' messages are gone
    response = await prod.admin_call(
        "GET", f"/v1/conversations/{second.probe['conversation_id']}/messages?limit=500"
    )
    assert len(response.json()["messages"]) <= 100


# -- what the record asks of people and of git -------------------------------------------------


async def test_a_missing_legal_sign_off_is_red(prod: Prod) -> None:
    verdict = await gonogo(prod.target(), replace(SIGNED, legal=""), prod.plan)

    assert_only(verdict, "sign_off")
    assert "legal sign-off (--legal)" in verdict.check("sign_off").evidence  # type: ignore[union-attr]


async def test_a_branch_that_only_starts_like_main_is_red(prod: Prod) -> None:
    verdict = await go(prod, target_ref="origin/mainline-hack")

    assert_only(verdict, "target_ref")
    assert "is not on origin/main" in verdict.check("target_ref").evidence  # type: ignore[union-attr]


async def test_a_rollback_ref_equal_to_the_target_is_red(prod: Prod) -> None:
    verdict = await go(prod, rollback_ref=prod.repo.target)

    assert_only(verdict, "rollback_ref")


async def test_a_known_blocker_is_red(prod: Prod) -> None:
    verdict = await go(prod, blockers=("BUG-17: receipts lost on iOS",))

    assert_only(verdict, "blockers")
    assert verdict.recheck_at is not None


async def test_a_failed_browser_e2e_run_is_red(prod: Prod) -> None:
    verdict = await go(prod, results={"web_e2e": ("FAIL", "ci run 4712")})

    assert_only(verdict, "web_e2e")
    assert verdict.areas()["web_e2e"]["result"] == "FAIL"


async def test_another_commit_deployed_than_the_target_is_red(prod: Prod) -> None:
    verdict = await go(prod, target_ref=prod.repo.rollback, rollback_ref=prod.repo.older)

    assert_only(verdict, "version")
    assert "another commit is deployed" in verdict.check("version").evidence  # type: ignore[union-attr]


# -- accounts --------------------------------------------------------------------------------


async def test_one_account_as_both_smoke_accounts_is_red(prod: Prod) -> None:
    target = replace(prod.target(), receiver_token=prod.admin)

    verdict = await gonogo(target, SIGNED, prod.plan)

    assert_only(verdict, "accounts")


async def test_a_member_token_as_admin_token_is_red_and_says_so(prod: Prod) -> None:
    target = replace(prod.target(), admin_token=prod.member)

    verdict = await gonogo(target, SIGNED, prod.plan)

    assert_only(verdict, "admin")
    assert "mia's, a member" in verdict.check("admin").evidence  # type: ignore[union-attr]


# -- delivery, one transport at a time ----------------------------------------------------------


async def test_websockets_switched_off_is_red_for_websocket_delivery_only(prod: Prod) -> None:
    await prod.admin_call("PUT", "/v1/admin/transport", json={"mode": "sse_only"})
    try:
        verdict = await go(prod)
    finally:
        await prod.admin_call("PUT", "/v1/admin/transport", json={"mode": "auto"})

    assert_only(verdict, "delivery_ws")


async def test_sse_refused_by_a_proxy_is_red_for_sse_delivery_only(prod: Prod) -> None:
    async with behind(prod, Breakage(refuse={"GET /v1/stream/sse": 404})) as url:
        verdict = await go(prod, url)

    assert_only(verdict, "delivery_sse")


async def test_sso_sign_in_refused_by_a_proxy_is_red_for_sso_only(prod: Prod) -> None:
    async with behind(prod, Breakage(refuse={"GET /v1/auth/sso/.*": 502})) as url:
        verdict = await go(prod, url)

    assert_only(verdict, "sso")


async def test_call_signalling_refused_by_a_proxy_is_red_for_calls_only(prod: Prod) -> None:
    async with behind(prod, Breakage(refuse={"GET /v1/calls/.*": 502})) as url:
        verdict = await go(prod, url)

    assert_only(verdict, "calls")


async def test_no_fresh_backup_is_red_for_backups_only(prod: Prod) -> None:
    backups = Path(prod.env["PARLEY_DATA_DIR"]) / "backups"
    hidden = backups.with_name("backups-hidden")
    backups.rename(hidden)
    try:
        verdict = await go(prod)
    finally:
        hidden.rename(backups)

    assert_only(verdict, "backups")


async def test_long_poll_refused_by_a_proxy_is_red_for_poll_delivery_only(prod: Prod) -> None:
    async with behind(prod, Breakage(refuse={"GET /v1/stream/poll": 404})) as url:
        verdict = await go(prod, url)

    assert_only(verdict, "delivery_poll")


async def test_fallback_streams_slower_than_3_s_are_red(prod: Prod) -> None:
    slow = {"GET /v1/stream/sse": 3.5, "GET /v1/stream/poll": 3.5}
    async with behind(prod, Breakage(delay=slow)) as url:
        verdict = await go(prod, url)

    assert_only(verdict, "fallback")


async def test_receipts_that_never_arrive_are_red(prod: Prod) -> None:
    async with behind(prod, Breakage(refuse={r"POST /v1/conversations/\d+/receipts": 404})) as url:
        verdict = await go(prod, url)

    assert_only(verdict, "receipts")


async def test_uploads_refused_as_too_large_are_red(prod: Prod) -> None:
    breakage = Breakage(refuse={r"POST /v1/conversations/\d+/attachments": 413})
    async with behind(prod, breakage) as url:
        verdict = await go(prod, url)

    assert_only(verdict, "attachments")


async def test_a_reconnect_that_loses_its_cursor_is_red(prod: Prod) -> None:
    async with behind(prod, Breakage(strip_cursor_for=prod.admin)) as url:
        verdict = await go(prod, url)

    assert_only(verdict, "reconnect")


async def test_slow_delivery_to_the_other_member_is_red_for_latency(prod: Prod) -> None:
    async with behind(prod, Breakage(slow_ws_for=(prod.member, 1.2))) as url:
        verdict = await go(prod, url)

    assert_only(verdict, "latency_p95")


async def test_a_stale_metrics_page_is_red(prod: Prod) -> None:
    async with behind(prod, Breakage(stale_metrics=True)) as url:
        verdict = await go(prod, url)

    assert_only(verdict, "metrics")
    assert "did not move" in verdict.check("metrics").evidence  # type: ignore[union-attr]


# -- configuration: the deployment's own preflight -------------------------------------------


async def _stamp(database_url: str, revision: str) -> None:
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE alembic_version SET version_num = $1", revision)
    finally:
        await conn.close()


async def test_a_pending_migration_is_red(prod: Prod) -> None:
    await _stamp(prod.database_url, "0004")  # the database as an older release left it
    try:
        verdict = await go(prod)
    finally:
        await _stamp(prod.database_url, head_revision())

    assert_only(verdict, "migrations")
    evidence = verdict.check("migrations").evidence  # type: ignore[union-attr]
    assert f"database at 0004, code at {head_revision()}" in evidence


async def test_redis_stopped_is_red_for_redis_only(prod: Prod) -> None:
    prod.redis.stop()
    try:
        verdict = await go(prod)
    finally:
        prod.redis.start()

    assert_only(verdict, "redis")


async def _patch_inbox(prod: Prod, **fields: object) -> None:
    response = await prod.admin_call("PATCH", f"/v1/admin/inboxes/{prod.inbox_id}", json=fields)
    assert response.status_code == 200, response.text


async def test_an_allowlisted_localhost_is_red(prod: Prod) -> None:
    await _patch_inbox(prod, allowed_domains=["shop.example.net", "localhost"])
    try:
        verdict = await go(prod)
    finally:
        await _patch_inbox(prod, allowed_domains=["shop.example.net"])

    assert_only(verdict, "inbox_domains")


async def test_no_enabled_inbox_is_red(prod: Prod) -> None:
    await _patch_inbox(prod, enabled=False)
    try:
        verdict = await go(prod)
    finally:
        await _patch_inbox(prod, enabled=True)

    assert_only(verdict, "inboxes_enabled")


async def test_an_inbox_routed_to_nobody_is_red(prod: Prod) -> None:
    await _patch_inbox(prod, operators=[])
    try:
        verdict = await go(prod)
    finally:
        await _patch_inbox(prod, operators=["ops"])

    assert_only(verdict, "inbox_routing")


async def test_an_inbox_without_a_privacy_url_is_red(prod: Prod) -> None:
    await _patch_inbox(prod, privacy_url=None)
    try:
        verdict = await go(prod)
    finally:
        await _patch_inbox(prod, privacy_url="https://shop.example.net/privacy")

    assert_only(verdict, "privacy_url")


async def test_an_alert_receiver_that_notifies_no_one_is_red(prod: Prod) -> None:
    prod.alertmanager.write_text(ALERTMANAGER.split("    webhook_configs:")[0])
    try:
        verdict = await go(prod)
    finally:
        prod.alertmanager.write_text(ALERTMANAGER)

    assert_only(verdict, "alert_receivers")
    assert "receiver 'pager' notifies no one" in verdict.check("alert_receivers").evidence  # type: ignore[union-attr]


# -- the gates (last: a P0 report spoils the window until the release moves) --------------------


async def test_a_duplicate_reported_by_a_client_is_red_for_the_gates(prod: Prod) -> None:
    async with httpx.AsyncClient(base_url=prod.server.url) as http:
        reported = await http.post(
            "/v1/stream/report",
            headers={"Authorization": f"Bearer {prod.member}"},
            json={"transport": "ws", "counters": {"timeline_duplicate_detected": 1}},
        )
        assert reported.status_code == 204
    try:
        verdict = await go(prod)
    finally:  # a new stage starts a new window: off → canary_1 (override) → off
        await prod.admin_call(
            "POST", "/v1/admin/release/promote", json={"override": True, "reason": "reset"}
        )
        await prod.admin_call("POST", "/v1/admin/release/abort", json={"reason": "reset"})

    assert_only(verdict, "gates")
    gates = verdict.check("gates")
    assert gates is not None and "gate_p0_ok=false" in gates.evidence
    assert "timeline_duplicate_detected: 1" in gates.evidence
