"""Go/No-Go: run the seeds' automated checks against a live deployment and decide.

Seed 002 §8.2: any failed check, a missing owner sign-off, an undefined rollback target or a
target that is not the main branch is an automatic NO-GO. `smoke` is the fast subset (health,
delivery over the three transports, receipts).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from parley.features.release import probes
from parley.features.release.probes import CheckResult, Deployment


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    sender_token: str
    receiver_token: str
    admin_token: str = ""


@dataclass(frozen=True, slots=True)
class SignOff:
    """Seed 002 §7's approval record."""

    release_owner: str = ""
    rollback_owner: str = ""
    target_ref: str = ""
    rollback_ref: str = ""
    main_ref: str = "origin/main"

    def problems(self) -> list[str]:
        found = []
        if not self.release_owner.strip():
            found.append("no Release Owner signed off (--release-owner)")
        if not self.rollback_owner.strip():
            found.append("no Rollback Owner named (--rollback-owner)")
        if not self.target_ref.strip():
            found.append("no target ref (--target-ref)")
        elif self.main_ref and not self.target_ref.startswith(self.main_ref):
            found.append(f"target ref {self.target_ref!r} is not on {self.main_ref}")
        if not self.rollback_ref.strip():
            found.append("rollback target not defined before rollout (--rollback-ref)")
        elif self.rollback_ref == self.target_ref:
            found.append("the rollback ref is the target ref itself")
        return found


@dataclass
class Verdict:
    decision: str  # GO | NO-GO
    at: datetime
    url: str
    sign_off: SignOff | None
    checks: list[CheckResult]
    reasons: list[str] = field(default_factory=list)

    @property
    def go(self) -> bool:
        return self.decision == "GO"

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "timestamp_utc": self.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "url": self.url,
            "approval": None
            if self.sign_off is None
            else {
                "release_owner": self.sign_off.release_owner,
                "rollback_owner": self.sign_off.rollback_owner,
                "target_ref": self.sign_off.target_ref,
                "rollback_ref": self.sign_off.rollback_ref,
            },
            "reasons": self.reasons,
            "checks": [
                {
                    "name": c.name,
                    "title": c.title,
                    "result": "PASS" if c.ok else "FAIL",
                    "evidence": c.evidence,
                    "values": c.values,
                }
                for c in self.checks
            ],
        }


Probe = Callable[[Deployment], Awaitable[CheckResult]]


def smoke_probes() -> list[tuple[str, str, Probe]]:
    return [
        ("health", "Readiness (/readyz)", probes.check_health),
        ("accounts", "Smoke accounts", probes.check_setup),
        ("delivery_ws", "Delivery over WebSocket", lambda d: probes.check_delivery(d, "ws")),
        ("delivery_sse", "Delivery over SSE", lambda d: probes.check_delivery(d, "sse")),
        ("delivery_poll", "Delivery over long-poll", lambda d: probes.check_delivery(d, "poll")),
        ("receipts", "Read receipts", probes.check_receipts),
        ("reconnect", "Reconnect resumes", probes.check_reconnect),
    ]


def gonogo_probes(admin: dict[str, str] | None) -> list[tuple[str, str, Probe]]:
    return [
        *smoke_probes(),
        ("fallback", "Fallback WebSocket → SSE", probes.check_fallback),
        ("attachments", "Attachments", probes.check_attachments),
        ("latency_p95", "p95 ≤ 1 s", probes.check_latency),
        ("gates", "Release gates", lambda d: probes.check_gates(d, admin)),
        ("messenger", "Website chat inboxes", lambda d: probes.check_messenger(d, admin)),
        ("metrics", "Prometheus metrics", probes.check_metrics),
    ]


async def run_checks(target: Target, chosen: list[tuple[str, str, Probe]]) -> list[CheckResult]:
    """Run `chosen` in order; after a failed sign-in or setup the rest cannot run."""
    results: list[CheckResult] = []
    async with httpx.AsyncClient(base_url=target.url, timeout=15) as http:
        deployment = Deployment(http, target.sender_token, target.receiver_token)
        try:
            for name, title, probe in chosen:
                if name != "health" and any(r.name == "accounts" and not r.ok for r in results):
                    results.append(CheckResult(name, title, False, "skipped: no smoke accounts"))
                    continue
                results.append(await _guarded(name, title, probe, deployment))
        finally:
            with contextlib.suppress(Exception):
                await deployment.close()
    return results


async def _guarded(name: str, title: str, probe: Probe, deployment: Deployment) -> CheckResult:
    try:
        return await probe(deployment)
    except Exception as exc:
        return CheckResult(name, title, False, f"{type(exc).__name__}: {exc}")


async def smoke(target: Target) -> Verdict:
    checks = await run_checks(target, smoke_probes())
    return _decide(target.url, None, checks)


async def gonogo(target: Target, sign_off: SignOff) -> Verdict:
    admin = {"Authorization": f"Bearer {target.admin_token}"} if target.admin_token else None
    checks = await run_checks(target, gonogo_probes(admin))
    return _decide(target.url, sign_off, checks)


def _decide(url: str, sign_off: SignOff | None, checks: list[CheckResult]) -> Verdict:
    reasons = sign_off.problems() if sign_off else []
    reasons += [f"{c.name} failed: {c.evidence}" for c in checks if not c.ok]
    return Verdict(
        decision="NO-GO" if reasons else "GO",
        at=datetime.now(UTC),
        url=url,
        sign_off=sign_off,
        checks=checks,
        reasons=reasons,
    )
