"""Go/No-Go: run the seeds' automated checks against a live deployment and decide.

Seed 002 §8.2: any failed check, a missing owner sign-off, an undefined rollback target or a
target that is not the main branch is an automatic NO-GO. Every check here can fail, and each
has a test that makes it fail (tests/integration/test_gonogo*.py). A check that could not run
(SKIP) blocks GO as a failure does; one left out on purpose (EXCLUDED) names its reason.
`smoke` is the fast subset (health, delivery over the three transports, receipts, reconnect,
SSO login redirect, call relay).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from parley.features.ops.preflight import Status as Finding
from parley.features.ops.preflight import tls_finding
from parley.features.release import probes
from parley.features.release.probe import KEEP_MESSAGES
from parley.features.release.probes import CheckResult, Deployment, Status
from parley.features.release.refs import Resolved, is_ancestor, resolve

# Seed 002 §8.3's areas, and which checks make each one's result.
AREAS = {
    "realtime": (
        "delivery_ws",
        "delivery_sse",
        "delivery_poll",
        "receipts",
        "attachments",
        "latency_p95",
    ),
    "reconnect": ("reconnect", "fallback"),
    "web_e2e": ("web_e2e",),
    "sso": ("sso",),
    "call_relay": ("calls",),
}
# What no exclusion can leave out: without these a record says nothing.
REQUIRED = {"sign_off", "target_ref", "rollback_ref", "blockers", "health", "version", "gates"}
FINDINGS = {
    Finding.PASS: Status.PASS,
    Finding.WARN: Status.WARN,
    Finding.FAIL: Status.FAIL,
    Finding.SKIP: Status.EXCLUDED,  # not applicable (plain http on loopback), reason given
}


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    sender_token: str
    receiver_token: str
    admin_token: str = ""
    profile: str = ""  # "": production for a non-loopback URL, else what the deployment says
    burst: int = probes.BURST_MESSAGES
    tls_min_days: int = 14


@dataclass(frozen=True, slots=True)
class SignOff:
    """Seed 002 §4.1's owners and seed 000's signatures."""

    release_owner: str = ""
    rollback_owner: str = ""
    incident_owner: str = ""
    qa: str = ""
    product: str = ""
    legal: str = ""

    def missing(self, profile: str) -> list[str]:
        wanted = {
            "Release Owner (--release-owner)": self.release_owner,
            "Rollback Owner (--rollback-owner)": self.rollback_owner,
            "Incident Comms Owner (--incident-owner)": self.incident_owner,
        }
        if profile == "production":  # seed 000: release engineer, QA, product, legal sign
            wanted |= {
                "QA sign-off (--qa)": self.qa,
                "product sign-off (--product)": self.product,
                "legal sign-off (--legal)": self.legal,
            }
        return [label for label, name in wanted.items() if not name.strip()]

    def to_json(self) -> dict[str, str]:
        return {
            "release_owner": self.release_owner,
            "rollback_owner": self.rollback_owner,
            "incident_comms_owner": self.incident_owner,
            "qa_signoff": self.qa,
            "product_signoff": self.product,
            "legal_signoff": self.legal,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """What ships and what is known about it beyond the probes (the rest of the record)."""

    target_ref: str = ""
    rollback_ref: str = ""
    main_ref: str = "origin/main"
    repo: Path = Path()
    test_deploy_sha: str = ""
    # area or check → (PASS | FAIL, evidence), for what runs elsewhere (the browser e2e suite)
    results: dict[str, tuple[str, str]] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)  # name → reason
    blockers: tuple[str, ...] = ()
    recheck: datetime | None = None


@dataclass
class Verdict:
    decision: str  # GO | NO-GO
    at: datetime
    url: str
    profile: str
    checks: list[CheckResult]
    sign_off: SignOff | None = None
    plan: Plan | None = None
    refs: dict[str, Resolved] = field(default_factory=dict)
    deployed: dict[str, Any] = field(default_factory=dict)
    probe: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def go(self) -> bool:
        return self.decision == "GO"

    @property
    def recheck_at(self) -> datetime | None:
        """When a NO-GO is looked at again: as given, else a day later (seed 000)."""
        if self.go:
            return None
        given = self.plan.recheck if self.plan else None
        return given or self.at + timedelta(days=1)

    def check(self, name: str) -> CheckResult | None:
        return next((c for c in self.checks if c.name == name), None)

    def areas(self) -> dict[str, dict[str, str]]:
        """Seed 002 §8.3: each smoke area PASS, FAIL or EXCLUDED, from its checks."""
        summary = {}
        for area, names in AREAS.items():
            found = [c for c in self.checks if c.name in names]
            if not found:
                continue
            if all(c.status is Status.EXCLUDED for c in found):
                summary[area] = {"result": "EXCLUDED", "why": found[0].evidence}
            elif all(c.ok for c in found):
                summary[area] = {"result": "PASS", "why": ", ".join(c.name for c in found)}
            else:
                bad = [c.name for c in found if not c.ok]
                summary[area] = {"result": "FAIL", "why": "failed: " + ", ".join(bad)}
        return summary

    def to_json(self) -> dict[str, Any]:
        plan = self.plan or Plan()
        target, rollback = self.refs.get("target"), self.refs.get("rollback")
        recheck = self.recheck_at
        return {
            "decision": self.decision,
            "timestamp_utc": _utc(self.at),
            "url": self.url,
            "profile": self.profile,
            "approval": None
            if self.sign_off is None
            else {
                **self.sign_off.to_json(),
                "target_ref": plan.target_ref,
                "target_sha": target.sha if target else None,
                "main_ref": plan.main_ref,
                "rollback_ref": plan.rollback_ref,
                "rollback_sha": rollback.sha if rollback else None,
                "deployed_sha": self.deployed.get("git_sha"),
                "last_test_deploy_sha": plan.test_deploy_sha or None,
            },
            "areas": self.areas(),
            "excluded": [
                {"name": c.name, "reason": c.evidence}
                for c in self.checks
                if c.status is Status.EXCLUDED
            ],
            "blockers": list(plan.blockers),
            "recheck_utc": _utc(recheck) if recheck else None,
            "recheck_given": plan.recheck is not None,
            "reasons": self.reasons,
            "deployed": self.deployed,
            "probe": self.probe,
            "checks": [
                {
                    "name": c.name,
                    "title": c.title,
                    "result": c.status.value,
                    "evidence": c.evidence,
                    "values": c.values,
                }
                for c in self.checks
            ],
        }


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- what is checked before the deployment is reached -----------------------------------------


def check_sign_off(sign_off: SignOff, profile: str) -> CheckResult:
    missing = sign_off.missing(profile)
    names = {k: v for k, v in sign_off.to_json().items() if v}
    evidence = (
        "missing: " + "; ".join(missing)
        if missing
        else ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in names.items())
    )
    return probes.result("sign_off", "Owners and sign-offs (seeds 000, 002)", not missing, evidence)


def check_refs(plan: Plan) -> tuple[list[CheckResult], dict[str, Resolved]]:
    """Target on the main ref (by ancestry, not by name); rollback an older known-good commit."""
    repo = plan.repo
    target, rollback = resolve(repo, plan.target_ref), resolve(repo, plan.rollback_ref)
    main = resolve(repo, plan.main_ref) if plan.main_ref else None
    title = f"Target ref is on {plan.main_ref or 'any branch'}"
    if target.problem or target.sha is None:
        target_check = probes.result(
            "target_ref", title, False, f"--target-ref {plan.target_ref!r}: {target.problem}"
        )
    elif main is None:
        target_check = probes.result(
            "target_ref", title, True, f"{target.given} = {target.short} (no --main-ref)"
        )
    elif main.sha is None:
        target_check = probes.result(
            "target_ref", title, False, f"--main-ref {plan.main_ref!r}: {main.problem}"
        )
    elif not is_ancestor(repo, target.sha, main.sha):
        target_check = probes.result(
            "target_ref",
            title,
            False,
            f"{target.given} = {target.short} is not on {plan.main_ref} ({main.short}): "
            "production ships from the main branch only (seed 002 §8.2)",
        )
    else:
        target_check = probes.result(
            "target_ref", title, True, f"{target.given} = {target.short}, on {plan.main_ref}"
        )
    title = "Rollback ref defined: an older known-good commit"
    if rollback.problem or rollback.sha is None:
        rollback_check = probes.result(
            "rollback_ref",
            title,
            False,
            f"--rollback-ref {plan.rollback_ref!r}: {rollback.problem} (seed 002: define the "
            "rollback target before rollout)",
        )
    elif rollback.sha == target.sha:
        rollback_check = probes.result(
            "rollback_ref", title, False, f"{rollback.given} is the target itself"
        )
    elif target.sha and not is_ancestor(repo, rollback.sha, target.sha):
        rollback_check = probes.result(
            "rollback_ref",
            title,
            False,
            f"{rollback.given} = {rollback.short} is not an ancestor of the target "
            f"{target.short}: rolling back to it would not undo this release",
        )
    else:
        rollback_check = probes.result(
            "rollback_ref", title, True, f"{rollback.given} = {rollback.short}, before the target"
        )
    refs = {"target": target, "rollback": rollback}
    if main is not None:
        refs["main"] = main
    return [target_check, rollback_check], refs


def check_blockers(plan: Plan) -> CheckResult:
    if plan.blockers:
        return probes.result(
            "blockers", "No known blockers", False, "open: " + "; ".join(plan.blockers)
        )
    return probes.result("blockers", "No known blockers", True, "none declared (--blocker)")


def external_results(plan: Plan) -> list[CheckResult]:
    """Areas that run elsewhere (the browser e2e suite): their results as given."""
    found = []
    title = "Browser e2e smoke against the test deployment (smoke:web:e2e)"
    given = plan.results.get("web_e2e")
    if given is None:
        found.append(
            probes.result(
                "web_e2e",
                title,
                False,
                "no result: run the browser e2e suite (scripts/test.sh tests/e2e) against the "
                "test deployment and pass --result web_e2e=PASS:<evidence>, or --exclude "
                "web_e2e=<reason>",
            )
        )
    else:
        outcome, evidence = given
        found.append(probes.result("web_e2e", title, outcome == "PASS", f"{outcome}: {evidence}"))
    return found


# -- the run ------------------------------------------------------------------------------------

Probe = Callable[[Deployment], Awaitable[CheckResult]]


def smoke_probes() -> list[tuple[str, str, Probe]]:
    return [
        ("health", "Readiness (/readyz)", probes.check_health),
        ("accounts", "Smoke accounts", probes.check_accounts),
        ("delivery_ws", "Delivery over WebSocket", lambda d: probes.check_delivery(d, "ws")),
        ("delivery_sse", "Delivery over SSE", lambda d: probes.check_delivery(d, "sse")),
        ("delivery_poll", "Delivery over long-poll", lambda d: probes.check_delivery(d, "poll")),
        ("receipts", "Read receipts", probes.check_receipts),
        ("reconnect", "Reconnect", probes.check_reconnect),
        ("sso", "Single sign-on", probes.check_sso),
        ("calls", "Call signalling relay", probes.check_calls),
    ]


class Run:
    """One Go/No-Go (or smoke) run: checks in order, each skipped when what it needs failed."""

    def __init__(self, deployment: Deployment, excluded: dict[str, str]) -> None:
        self.d = deployment
        self.excluded = excluded
        self.checks: list[CheckResult] = []

    def failed(self, name: str) -> bool:
        return any(c.name == name and not c.ok for c in self.checks)

    async def step(self, name: str, title: str, probe: Probe, *needs: str) -> CheckResult:
        if name in self.excluded:
            found = CheckResult(name, title, Status.EXCLUDED, self.excluded[name])
        elif blocked := [need for need in needs if self.failed(need)]:
            found = CheckResult(name, title, Status.SKIP, f"skipped: {blocked[0]} failed")
        else:
            try:
                found = await probe(self.d)
            except Exception as exc:
                found = probes.result(name, title, False, f"{type(exc).__name__}: {exc}")
        self.checks.append(found)
        return found


async def smoke(target: Target) -> Verdict:
    async with _client(target) as http:
        d = Deployment(http, target.sender_token, target.receiver_token)
        run = Run(d, {})
        try:
            for name, title, probe in smoke_probes():
                needs = () if name == "health" else ("health", "accounts")
                await run.step(name, title, probe, *needs)
            d.trimmed = await _trim(d)
        finally:
            with contextlib.suppress(Exception):
                await d.close()
    return _decide(target.url, "smoke", run.checks, probe_record=_written(d))


async def gonogo(target: Target, sign_off: SignOff, plan: Plan) -> Verdict:
    """Every check of the record, then the decision."""
    async with _client(target) as http:
        d = Deployment(http, target.sender_token, target.receiver_token, target.admin_token)
        deployed = await _deployed(http)
        profile = target.profile or _default_profile(target.url, deployed)
        local = [check_sign_off(sign_off, profile)]
        ref_checks, refs = check_refs(plan)
        local += [*ref_checks, check_blockers(plan), *external_results(plan)]
        run = Run(d, {k: v for k, v in plan.excluded.items() if k not in REQUIRED})
        for check in local:
            if check.name in run.excluded and check.name not in REQUIRED:
                check = CheckResult(
                    check.name, check.title, Status.EXCLUDED, run.excluded[check.name]
                )
            run.checks.append(check)
        try:
            await _probe_all(run, target, refs.get("target"), profile)
        finally:
            with contextlib.suppress(Exception):
                await d.close()
    return _decide(
        target.url,
        profile,
        run.checks,
        sign_off=sign_off,
        plan=plan,
        refs=refs,
        deployed=deployed,
        probe_record=_written(d),
    )


async def _probe_all(run: Run, target: Target, wanted: Resolved | None, profile: str) -> None:
    d, up = run.d, ("health", "accounts")
    await run.step("health", "Readiness (/readyz: the database answers)", probes.check_health)
    await run.step(
        "version", "Deployed commit is the target", _version(wanted), "health", "target_ref"
    )
    await run.step("accounts", "Smoke accounts", probes.check_accounts, "health")
    await run.step("admin", "Admin token", probes.check_admin, "health")
    if run.failed("admin"):
        d.admin = None  # a refused token is no token: nothing else tries it
    before: dict[str, float] = {}
    with contextlib.suppress(Exception):
        before = await probes.scrape(d)
    for transport in ("ws", "sse", "poll"):
        await run.step(
            f"delivery_{transport}",
            f"Delivery over {transport}",
            lambda dd, t=transport: probes.check_delivery(dd, t),
            *up,
        )
    await run.step("receipts", "Read receipts", probes.check_receipts, *up)
    await run.step("attachments", "Attachments", probes.check_attachments, *up)
    await run.step("reconnect", "Reconnect", probes.check_reconnect, *up)
    await run.step("fallback", "Fallback", probes.check_fallback, *up)
    await run.step("sso", "Single sign-on login redirect", probes.check_sso, "health")
    await run.step("calls", "Call signalling relay", probes.check_calls, *up, "delivery_sse")
    burst_error = ""
    burst = None
    if not any(run.failed(n) for n in up):
        try:
            burst = await probes.run_burst(d, target.burst)
        except Exception as exc:
            burst_error = f"the canary burst failed: {type(exc).__name__}: {exc}"
    await run.step(
        "latency_p95", "p95 ≤ 1 s", _with_burst(probes.check_latency, burst, burst_error), *up
    )
    await run.step(
        "gates", "Release gates", _with_burst(probes.check_gates, burst, burst_error), *up, "admin"
    )
    await run.step(
        "metrics", "Prometheus metrics", lambda dd: probes.check_metrics(dd, before), *up
    )
    await _configuration(run, target, profile)
    d.trimmed = await _trim(d) if not run.failed("accounts") else {}


def _with_burst(
    check: Callable[[Deployment, probes.Burst], Awaitable[CheckResult]],
    burst: probes.Burst | None,
    error: str,
) -> Probe:
    async def probe(d: Deployment) -> CheckResult:
        if burst is None:
            raise RuntimeError(error or "the canary burst did not run")
        return await check(d, burst)

    return probe


def _version(wanted: Resolved | None) -> Probe:
    async def check_version(d: Deployment) -> CheckResult:
        deployed = await d.call("GET", "/version", {})
        sha = str(deployed.get("git_sha", "unknown"))
        title = "Deployed commit is the target (GET /version)"
        described = (
            f"{d.url} runs parley {deployed.get('version')} at {sha[:12]} (schema "
            f"{deployed.get('schema', {}).get('revision')}, profile {deployed.get('profile')})"
        )
        if sha == "unknown":
            return probes.result(
                "version", title, False, f"{described}: set PARLEY_GIT_SHA where it is deployed"
            )
        if wanted is None or wanted.sha is None:
            return probes.result(
                "version", title, False, f"{described}; the target ref did not resolve"
            )
        same = wanted.sha.startswith(sha) or sha.startswith(wanted.sha)
        evidence = f"{described}; the target is {wanted.short}" + (
            "" if same else ": another commit is deployed"
        )
        return probes.result("version", title, same, evidence)

    return check_version


async def _configuration(run: Run, target: Target, profile: str) -> None:
    """The deployment's preflight for `profile`, one check each, and the URL's certificate."""
    d = run.d
    if run.failed("health") or run.failed("admin"):
        why = "health failed" if run.failed("health") else "admin failed: no admin token"
        run.checks.append(
            CheckResult(
                "configuration",
                f"Deployment configuration ({profile} profile)",
                Status.SKIP,
                f"skipped: {why}",
            )
        )
    else:
        try:
            found = await d.call(
                "GET", "/v1/admin/preflight", d.admin or {}, params={"profile": profile}
            )
        except Exception as exc:
            run.checks.append(
                probes.result(
                    "configuration",
                    "Deployment configuration",
                    False,
                    f"{type(exc).__name__}: {exc}",
                )
            )
        else:
            for item in found["checks"]:
                status = FINDINGS[Finding(item["status"])]
                if item["name"] in run.excluded:
                    status, item["evidence"] = Status.EXCLUDED, run.excluded[item["name"]]
                run.checks.append(
                    CheckResult(item["name"], item["title"], status, item["evidence"])
                )
    status, evidence = await tls_finding(target.url, profile, target.tls_min_days)
    run.checks.append(CheckResult("tls", "TLS certificate of the URL", FINDINGS[status], evidence))


async def _trim(d: Deployment) -> dict[str, Any]:
    """Keep the probe conversation to its newest messages; what it deleted, for the record."""
    if not d.conversation_id:
        return {}
    try:
        return dict(
            await d.call(
                "POST",
                "/v1/release/probe/trim",
                d.sender,
                json={"conversation_id": d.conversation_id, "keep_messages": KEEP_MESSAGES},
            )
        )
    except Exception as exc:
        return {"error": f"not trimmed: {exc}"}


def _written(d: Deployment) -> dict[str, Any]:
    return {
        "conversation_id": d.conversation_id or None,
        "wrote": {
            "messages": d.written.messages,
            "attachments": d.written.attachments,
            "client_reports": d.written.reports,
        },
        "trimmed": d.trimmed,
    }


async def _deployed(http: httpx.AsyncClient) -> dict[str, Any]:
    with contextlib.suppress(Exception):
        response = await http.get("/version")
        if response.status_code == 200:
            return dict(response.json())
    return {}


def _default_profile(url: str, deployed: dict[str, Any]) -> str:
    """Production for any non-loopback URL; on loopback, what the deployment says it is."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return "production"
    return str(deployed.get("profile") or "embedded")


@contextlib.asynccontextmanager
async def _client(target: Target) -> Any:
    async with httpx.AsyncClient(base_url=target.url, timeout=15) as http:
        yield http


def _decide(
    url: str,
    profile: str,
    checks: list[CheckResult],
    *,
    sign_off: SignOff | None = None,
    plan: Plan | None = None,
    refs: dict[str, Resolved] | None = None,
    deployed: dict[str, Any] | None = None,
    probe_record: dict[str, Any] | None = None,
) -> Verdict:
    reasons = [
        f"{c.name} {'failed' if c.status is Status.FAIL else 'could not run'}: {c.evidence}"
        for c in checks
        if not c.ok
    ]
    return Verdict(
        decision="NO-GO" if reasons else "GO",
        at=datetime.now(UTC),
        url=url,
        profile=profile,
        checks=checks,
        sign_off=sign_off,
        plan=plan,
        refs=refs or {},
        deployed=deployed or {},
        probe=probe_record or {},
        reasons=reasons,
    )
