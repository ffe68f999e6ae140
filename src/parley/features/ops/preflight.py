"""Preflight: is this deployment configured to run as what it claims to be?

A registry of named checks, each one `async def` that looks at one thing — the settings, the
database, Redis, the inboxes, the TLS certificate, the alert routing, the disk — and returns a
`Finding`: pass, warn, fail or skip, with evidence. The profile (production, staging, embedded)
decides how severe a finding is: SQLite is fine embedded and a failure in production.

One implementation, three callers: `parley preflight` (in process), `GET /v1/admin/preflight`
(the server checks itself) and Go/No-Go's production profile (which calls that endpoint, and
checks the TLS certificate of the URL it was given). A new check is one decorated function.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import yaml

from parley.core.inboxes import Inbox
from parley.features.ops.version import describe
from parley.logs import redacted
from parley.settings import Settings
from parley.storage.database import Database

PROFILES = ("production", "staging", "embedded")
TIMEOUT_SECONDS = 5.0
# Values shipped as examples, or typed by someone in a hurry: never a production secret.
PLACEHOLDER_SECRETS = {"secret", "changeme", "change-me", "change_me", "dev", "test", "parley"}
MIN_SECRET_LENGTH = 32
# Hosts that belong in development, never in a production inbox's allowlist (seed 001, §2).
DEV_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "example.com", "example.org"}  # noqa: S104
DEV_SUFFIXES = (".localhost", ".local", ".test", ".example", ".invalid", ".example.com")
PLACEHOLDER_MARKS = ("example.com", "example.org", "change_me", "changeme", "replace_me", "<")


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a status, not a password
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Finding:
    name: str
    title: str
    status: Status
    evidence: str

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status.value,
            "evidence": self.evidence,
        }


class Parts(Protocol):
    """What preflight reads of a running process (`parley.assembly.Services` has it all)."""

    settings: Settings
    db: Database

    @property
    def inboxes(self) -> Any: ...

    @property
    def livechat(self) -> Any: ...


@dataclass
class Context:
    """One preflight run: the deployment's parts, the profile, and the URL users reach."""

    parts: Parts
    profile: str
    url: str = ""
    ca_file: str | None = None
    _inboxes: list[Inbox] | None = None

    @property
    def settings(self) -> Settings:
        return self.parts.settings

    def severity(self, *, production: Status, staging: Status, embedded: Status) -> Status:
        return {"production": production, "staging": staging, "embedded": embedded}[self.profile]

    async def enabled_inboxes(self) -> list[Inbox]:
        if self._inboxes is None:
            self._inboxes = await self.parts.inboxes.list_inboxes()
        return [inbox for inbox in self._inboxes if inbox.enabled]


CheckFunction = Callable[[Context], Awaitable[tuple[Status, str]]]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    title: str
    run: CheckFunction
    remote: bool = True  # False: only the caller can check it (the URL it reaches)


REGISTRY: dict[str, Check] = {}


def preflight_check(
    name: str, title: str, *, remote: bool = True
) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check; its function returns (status, evidence)."""

    def register(function: CheckFunction) -> CheckFunction:
        REGISTRY[name] = Check(name, title, function, remote)
        return function

    return register


async def run_preflight(context: Context, *, remote_only: bool = False) -> list[Finding]:
    """Every registered check in order; a check that raises is a failure naming the error."""
    findings = []
    for check in REGISTRY.values():
        if remote_only and not check.remote:
            continue
        findings.append(await run_check(check, context))
    return findings


async def run_check(check: Check, context: Context) -> Finding:
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS * 2):
            status, evidence = await check.run(context)
    except Exception as exc:
        status, evidence = Status.FAIL, f"the check itself failed: {type(exc).__name__}: {exc}"
    return Finding(check.name, check.title, status, evidence)


def _lenient(status: Status, context: Context, evidence: str) -> str:
    """Evidence of a finding the profile lets pass says so."""
    return f"{evidence} (allowed for {context.profile})" if status is Status.PASS else evidence


# -- the checks -----------------------------------------------------------------------------------
PASS, WARN, FAIL, SKIP = Status.PASS, Status.WARN, Status.FAIL, Status.SKIP


@preflight_check("database", "Database reachable (PostgreSQL beyond embedded)")
async def check_database(context: Context) -> tuple[Status, str]:
    settings = context.settings
    url = redacted(settings.effective_database_url)
    try:
        await context.parts.db.ping()
    except Exception as exc:
        return FAIL, f"{url} does not answer: {exc}"
    if settings.is_embedded:
        status = context.severity(production=FAIL, staging=WARN, embedded=PASS)
        return status, (
            f"embedded SQLite ({url}): one node only, no failover"
            + ("; set PARLEY_DATABASE_URL=postgresql+asyncpg://..." if status is not PASS else "")
        )
    return PASS, f"{url} answers"


@preflight_check("migrations", "Schema migrations applied")
async def check_migrations(context: Context) -> tuple[Status, str]:
    schema = (await describe(context.settings, context.parts.db))["schema"]
    if "error" in schema:
        return FAIL, f"cannot read the schema revision: {schema['error']}"
    if schema["revision"] is None:
        return FAIL, f"the database was never migrated (code head {schema['head']}): parley migrate"
    if schema["pending"]:
        return FAIL, (
            f"database at {schema['revision']}, code at {schema['head']}: migrations pending "
            "(run `parley migrate` before serving this version)"
        )
    return PASS, f"database at the code's head, {schema['head']}"


@preflight_check("redis", "Redis for fan-out, limits and presence")
async def check_redis(context: Context) -> tuple[Status, str]:
    url = context.settings.redis_url
    if not url:
        status = context.severity(production=FAIL, staging=WARN, embedded=PASS)
        return status, (
            "not configured: in-process bus and limits, one node only"
            + ("; set PARLEY_REDIS_URL" if status is not PASS else "")
        )
    client = aioredis.from_url(
        url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS
    )
    started = time.perf_counter()
    try:
        await client.ping()
    except Exception as exc:
        return FAIL, f"{redacted(url)} does not answer: {type(exc).__name__}: {exc}"
    finally:
        await client.aclose()
    return PASS, f"{redacted(url)} answers PING in {(time.perf_counter() - started) * 1000:.0f} ms"


SECRET_SETTINGS = ("secret_key",)


@preflight_check("secrets", "Secrets set, not empty or default")
async def check_secrets(context: Context) -> tuple[Status, str]:
    problems = []
    for name in SECRET_SETTINGS:
        value = str(getattr(context.settings, name))
        variable = f"PARLEY_{name.upper()}"
        if not value:
            problems.append(f"{variable} is empty")
        elif value.lower() in PLACEHOLDER_SECRETS or len(value) < MIN_SECRET_LENGTH:
            problems.append(
                f"{variable} is a placeholder or shorter than {MIN_SECRET_LENGTH} characters"
            )
    if not problems:
        return PASS, ", ".join(f"PARLEY_{n.upper()}" for n in SECRET_SETTINGS) + " set"
    status = context.severity(production=FAIL, staging=FAIL, embedded=WARN)
    hint = " (make one: python -c 'import secrets; print(secrets.token_hex(32))')"
    return status, "; ".join(problems) + hint


@preflight_check("demo", "Demo sign-in off")
async def check_demo(context: Context) -> tuple[Status, str]:
    if not context.settings.demo:
        return PASS, "PARLEY_DEMO is off"
    status = context.severity(production=FAIL, staging=FAIL, embedded=PASS)
    return status, "PARLEY_DEMO is on: anyone can sign in as the demo users"


@preflight_check("inboxes_enabled", "Website chat: at least one enabled inbox")
async def check_inboxes_enabled(context: Context) -> tuple[Status, str]:
    if not context.settings.messenger_enabled:
        return PASS, "the website chat is switched off (PARLEY_MESSENGER_ENABLED=false)"
    enabled = await context.enabled_inboxes()
    if enabled:
        return PASS, f"{len(enabled)} enabled: " + ", ".join(i.name for i in enabled)
    status = context.severity(production=FAIL, staging=WARN, embedded=PASS)
    return status, _lenient(
        status,
        context,
        "no enabled inbox: the widget answers no site (`parley inbox add`, or "
        "PARLEY_MESSENGER_ENABLED=false if the website chat is not used)",
    )


def dev_domain(domain: str) -> bool:
    host = domain.removeprefix("*.").lower()
    return host in DEV_HOSTS or host.endswith(DEV_SUFFIXES)


@preflight_check("inbox_domains", "Website chat: allowlists without development hosts")
async def check_inbox_domains(context: Context) -> tuple[Status, str]:
    problems = []
    enabled = await context.enabled_inboxes()
    for inbox in enabled:
        if not inbox.allowed_domains:
            problems.append(f"inbox {inbox.name!r} allows no domain, so no site can embed it")
        dev = [d for d in inbox.allowed_domains if dev_domain(d)]
        if dev:
            problems.append(f"inbox {inbox.name!r} allows development hosts: {', '.join(dev)}")
    if not problems:
        return PASS, f"{len(enabled)} enabled inboxes, each allowlisting production hosts only"
    return context.severity(production=FAIL, staging=WARN, embedded=WARN), "; ".join(problems)


@preflight_check("inbox_routing", "Website chat: every inbox routed, default branch exists")
async def check_inbox_routing(context: Context) -> tuple[Status, str]:
    branch_problem = await context.parts.livechat.check_default_branch()
    problems = [branch_problem] if branch_problem else []
    default_branch = context.settings.default_branch_id is not None and not branch_problem
    enabled = await context.enabled_inboxes()
    for inbox in enabled:
        routed = inbox.routing_rules or inbox.branch_id is not None or default_branch
        if not routed and not inbox.operators:
            problems.append(
                f"inbox {inbox.name!r} has no routing rules, no branch, no operators and no "
                "PARLEY_DEFAULT_BRANCH_ID: nobody would see its chats"
            )
    if problems:
        return FAIL, "; ".join(problems)
    return PASS, f"{len(enabled)} enabled inboxes, each routed to someone"


@preflight_check("privacy_url", "Website chat: a privacy policy link")
async def check_privacy_url(context: Context) -> tuple[Status, str]:
    enabled = await context.enabled_inboxes()
    missing = [i.name for i in enabled if not (i.privacy_url or context.settings.privacy_url)]
    if not missing:
        where = "PARLEY_PRIVACY_URL" if context.settings.privacy_url else "each inbox"
        return PASS, f"set ({where}) for the {len(enabled)} enabled inboxes"
    status = context.severity(production=FAIL, staging=WARN, embedded=PASS)
    return status, (
        "no privacy URL for inboxes "
        + ", ".join(repr(n) for n in missing)
        + ": set PARLEY_PRIVACY_URL or the inbox's privacy_url (seed 001)"
    )


@preflight_check("tls", "TLS certificate of the public URL", remote=False)
async def check_tls(context: Context) -> tuple[Status, str]:
    return await tls_finding(
        context.url or context.settings.public_url,
        context.profile,
        context.settings.preflight_tls_min_days,
        context.ca_file,
    )


async def tls_finding(
    url: str, profile: str, min_days: int, ca_file: str | None = None
) -> tuple[Status, str]:
    """The TLS check on its own: Go/No-Go runs it against the URL it was given."""
    if not url:
        return SKIP, "no URL to check (PARLEY_PUBLIC_URL)"
    parts = urlsplit(url)
    if parts.scheme != "https":
        if parts.hostname in ("127.0.0.1", "localhost", "::1"):
            return SKIP, f"{url} is plain http on loopback"
        status = {"production": FAIL, "staging": WARN, "embedded": PASS}[profile]
        return status, f"{url} is plain http: tokens and messages cross the network in clear"
    try:
        days, subject = await certificate_days_left(url, ca_file)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        return FAIL, f"no valid certificate at {parts.netloc}: {type(exc).__name__}: {exc}"
    evidence = f"{subject}: expires in {days:.0f} days (at least {min_days} needed)"
    return (FAIL if days < min_days else PASS), evidence


async def certificate_days_left(url: str, ca_file: str | None = None) -> tuple[float, str]:
    """Days until the verified certificate of `url` expires, and whom it names."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    context = ssl.create_default_context(cafile=ca_file)
    async with asyncio.timeout(TIMEOUT_SECONDS):
        _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    try:
        cert = writer.get_extra_info("peercert") or {}
    finally:
        writer.close()
        await writer.wait_closed()
    expires = ssl.cert_time_to_seconds(cert["notAfter"])
    names = [v for kind, v in cert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")]
    return (expires - time.time()) / 86400, ", ".join(names) or host


@preflight_check("alert_receivers", "Alerts reach someone (Alertmanager receivers, kill webhook)")
async def check_alert_receivers(context: Context) -> tuple[Status, str]:
    settings = context.settings
    problems = []
    if not settings.alertmanager_config:
        problems.append(
            "PARLEY_ALERTMANAGER_CONFIG unset: nothing says where deploy/prometheus's alerts go"
        )
    else:
        problems += await asyncio.to_thread(
            alertmanager_problems, Path(settings.alertmanager_config)
        )
    if not settings.release_webhook_url:
        problems.append("PARLEY_RELEASE_WEBHOOK_URL unset: an automatic kill notifies no one")
    if problems:
        status = context.severity(production=FAIL, staging=WARN, embedded=PASS)
        return status, _lenient(status, context, "; ".join(problems))
    return PASS, (
        f"every route in {settings.alertmanager_config} ends at a receiver that notifies; "
        "kills are posted to the release webhook"
    )


def alertmanager_problems(path: Path) -> list[str]:
    """What keeps an Alertmanager configuration from notifying anyone; empty when it does."""
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return [f"cannot read {path}: {exc}"]
    if not isinstance(config, dict) or not isinstance(config.get("route"), dict):
        return [f"{path} has no route"]
    receivers = {r.get("name"): r for r in config.get("receivers") or [] if isinstance(r, dict)}
    problems = []
    for name in sorted(set(_route_receivers(config["route"])), key=str):
        receiver = receivers.get(name)
        if receiver is None:
            problems.append(f"route to receiver {name!r}, which {path.name} does not define")
            continue
        notifiers = [
            item
            for key, items in receiver.items()
            if key.endswith("_configs") and isinstance(items, list)
            for item in items
        ]
        if not notifiers:
            problems.append(f"receiver {name!r} notifies no one (no *_configs)")
        elif all(_placeholder(item) for item in notifiers):
            problems.append(f"receiver {name!r} still has the example's placeholder addresses")
    return problems


def _route_receivers(route: dict[str, Any]) -> list[Any]:
    found = [route["receiver"]] if "receiver" in route else []
    for child in route.get("routes") or []:
        if isinstance(child, dict):
            found += _route_receivers(child)
    return found


def _placeholder(notifier: Any) -> bool:
    text = yaml.safe_dump(notifier).lower()
    return any(mark in text for mark in PLACEHOLDER_MARKS)


@preflight_check("disk", "Free disk space for the data directory")
async def check_disk(context: Context) -> tuple[Status, str]:
    directory, free, total = await asyncio.to_thread(_disk_usage, context.settings.data_dir)
    free_mb = free / 1024 / 1024
    minimum = context.settings.preflight_min_free_disk_mb
    evidence = (
        f"{free_mb:,.0f} MB free of {total / 1024 / 1024:,.0f} MB at {directory} "
        f"(at least {minimum:,} MB needed: PARLEY_PREFLIGHT_MIN_FREE_DISK_MB)"
    )
    return (FAIL if free_mb < minimum else PASS), evidence


@preflight_check("backups", "A verified backup fresher than PARLEY_BACKUP_MAX_AGE_HOURS")
async def check_backups(context: Context) -> tuple[Status, str]:
    from parley.features.ops.backup import newest_verified_backup_age

    directory = context.settings.effective_backup_dir
    limit = timedelta(hours=context.settings.backup_max_age_hours)
    age = await asyncio.to_thread(newest_verified_backup_age, directory)
    missing = context.severity(production=FAIL, staging=WARN, embedded=WARN)
    if age is None:
        return missing, f"no verified backup in {directory}: run `parley backup` (and schedule it)"
    evidence = f"newest verified backup is {_age(age)} old (at most {_age(limit)})"
    return (PASS if age <= limit else missing), evidence


@preflight_check("staging_dump", "Staging synced from an anonymized dump ≤ 7 days old")
async def check_staging_dump(context: Context) -> tuple[Status, str]:
    from parley.features.ops.backup import newest_staging_dump_age

    if context.profile != "staging":
        return SKIP, f"only for the staging profile (this is {context.profile})"
    directory = context.settings.effective_backup_dir
    limit = timedelta(days=context.settings.staging_dump_max_age_days)
    age = await asyncio.to_thread(newest_staging_dump_age, directory)
    if age is None:
        return FAIL, f"no anonymized dump in {directory}: `parley backup --anonymize` on production"
    evidence = f"newest anonymized dump is {_age(age)} old (at most {_age(limit)}; seed 000)"
    return (PASS if age <= limit else FAIL), evidence


def _age(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _disk_usage(data_dir: Path) -> tuple[Path, int, int]:
    directory = Path(data_dir).resolve()
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    usage = shutil.disk_usage(directory)
    return directory, usage.free, usage.total
